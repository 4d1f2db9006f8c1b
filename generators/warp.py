"""Part-wise affine warping of feature maps: Deformable GAN's ``AffineTransformLayer`` (mask mode).

Source: AliaksandrSiarohin/pose-gan @ 8693ec4, pose_transform.py (``AffineTransformLayer`` with
``number_of_transforms=10``, ``aggregation_fn='max'`` and masks), which calls TF 1.x
``tf.contrib.image.transform`` (NEAREST) and ``tf.image.resize_images`` (NEAREST_NEIGHBOR).

    warp_parts(features (B,C,h,w), affines (B,P,2,3), masks (B,P,H,W)) -> (B,C,h,w)

``affines`` are backward maps in FULL-RESOLUTION pixel coordinates of the H x W image: row
``[[a0, a1, a2], [b0, b1, b2]]`` sends a target (output) point (x, y) to the source (input) point
(a0 x + a1 y + a2, b0 x + b1 y + b2); x is the column and y the row index, pixel (i, j) sits at
(x, y) = (j, i) (pixel centres on integers). ``augment.data.pose.part_affines`` makes them for the
10 Deformable-GAN body parts; its "no point" transform (translation +1000) samples nothing.
``masks`` are the target-frame part masks at full resolution (``augment.data.pose.part_masks``).

What the official layer does, and what this does identically, for a feature map of h x w:

1. Each part's transform is rescaled to the feature resolution by dividing its translation by the
   downscale factor s (W/w for the x shift a2, H/h for the y shift b2; the official code divides
   a2 by H/h and b2 by W/w, the same numbers in every pyramid it builds, where H/h = W/w); the
   linear part is kept. So feature pixel (x, y) samples the feature at (a0 x + a1 y + a2 / s,
   b0 x + b1 y + b2 / s): coordinates scale about the pixel-index origin (feature pixel i <->
   image pixel s i), the convention of TF 1.x nearest resizing used for the masks too.
2. ``tf.contrib.image.transform``, NEAREST: the source position is computed in float32 and
   rounded half away from zero (C++ ``std::round``) to a pixel index; indices outside the map
   read 0 (constant fill). Here the rounding is explicit (``torch.round`` and ``grid_sample``'s
   nearest mode round half to even) and the rounded indices are read by ONE ``index_select`` for
   all B x P maps (pixels as rows of C channels, the P index maps side by side, the input not
   tiled), with a zero row appended that every outside index reads. Integer indexing is exact in
   every dtype (a bf16 ``grid_sample`` grid is not); pixel i sits at coordinate i, as in the kernel.
3. Masks are resized by TF 1.x nearest neighbour (``align_corners=False``: output pixel i reads
   input pixel floor(i H / h)), which is ``F.interpolate(mode='nearest')``.
4. The P warped maps are multiplied by their masks and reduced by max over the P parts, the
   masked-out zeros included (so a negative feature becomes 0 wherever some part is masked off).
   With binary masks (``part_masks``; the official ones too) multiplying by the mask is reading
   the zero row where the mask is 0, which is what is done here. Backward: see :class:`_MaxOfRows`.

Everything runs on the features' device, batched over B and P, in the features' dtype (indices
in float32 / int64 outside autocast). Gradients flow to ``features`` (not to the affines or masks,
as in the official layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def round_half_away_from_zero(x: torch.Tensor) -> torch.Tensor:
    """C++ ``std::round``: 0.5 -> 1, -0.5 -> -1, 2.5 -> 3 (``torch.round`` gives 0, -0, 2)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def sample_coordinates(affines: torch.Tensor, size: tuple[int, int], full_size: tuple[int, int]) -> torch.Tensor:
    """Unrounded source positions (B,P,h,w,2) float32 (x, y) in feature-pixel units.

    affines (B,P,2,3) in full-resolution pixels; ``size`` = (h, w) of the feature map,
    ``full_size`` = (H, W) of the image the affines refer to (see the module docstring, step 1).
    """
    if affines.dim() != 4 or tuple(affines.shape[-2:]) != (2, 3):
        raise ValueError(f"affines must be (B, P, 2, 3), got {tuple(affines.shape)}")
    h, w = (int(s) for s in size)
    full_h, full_w = (int(s) for s in full_size)
    a = affines.float()
    scale = torch.tensor([full_w / w, full_h / h], dtype=torch.float32, device=a.device)
    linear = a[..., :2]  # (B,P,2,2)
    shift = a[..., 2] / scale  # (B,P,2) x, y
    ys, xs = torch.meshgrid(
        torch.arange(h, device=a.device, dtype=torch.float32),
        torch.arange(w, device=a.device, dtype=torch.float32),
        indexing="ij",
    )
    # out[..., k] = linear[k, 0] * x + linear[k, 1] * y + shift[k], as the TF kernel evaluates it.
    out = (
        linear[..., None, None, :, 0] * xs[..., None]
        + linear[..., None, None, :, 1] * ys[..., None]
        + shift[..., None, None, :]
    )
    return out  # (B,P,h,w,2)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF 1.x nearest-neighbour resize (align_corners=False) of (B,P,H,W) -> (B,P,h,w)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks, size=tuple(int(s) for s in size), mode="nearest")


class _MaxOfRows(torch.autograd.Function):
    """out[b, j, :] = max over parts p of rows[b, index[b, p, j], :] (elementwise over channels).

    rows (B,N+1,C) (row N is zeros), index (B,P,J) int64 in [0, N] -> (B,J,C). One index_select
    reads all B x P x J rows (C contiguous values each). When gradients are needed, the forward
    also records which row won each output element, so the backward is a scatter-add of B*J*C
    values instead of the (B,P,J,C) backward of a max over a gathered volume. Among tied parts
    the highest part index wins (TF's reduce_max splits the gradient among them: the same
    gradient on ``rows`` whenever the tied parts read the same row, as they do except for
    distinct pixels holding bit-identical values).
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        b, n1, c = rows.shape
        parts, j = index.shape[1:]
        offsets = (torch.arange(b, device=rows.device) * n1).view(b, 1, 1)
        sampled = rows.reshape(b * n1, c).index_select(0, (index + offsets).view(-1)).view(b, parts, j, c)
        out = sampled.amax(dim=1)
        if ctx.needs_input_grad[0]:
            part_ids = torch.arange(parts, device=rows.device, dtype=torch.uint8).view(1, parts, 1, 1)
            winner = ((sampled == out.unsqueeze(1)) * part_ids).amax(dim=1, keepdim=True)
            source = index.unsqueeze(-1).expand(b, parts, j, c).gather(1, winner.long()).squeeze(1)
            ctx.save_for_backward(source)
        ctx.rows_shape = rows.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (source,) = ctx.saved_tensors
        grad_rows = grad.new_zeros(ctx.rows_shape)
        grad_rows.scatter_add_(1, source, grad.contiguous())
        return grad_rows, None


def warp_parts(features: torch.Tensor, affines: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Warp ``features`` (B,C,h,w) by each of the P part transforms, mask, max-merge: (B,C,h,w).

    affines (B,P,2,3) backward maps target -> source in full-resolution pixels (x, y);
    masks (B,P,H,W) binary target-frame part masks at full resolution (H x W = the affines' image;
    nonzero = inside the part). Output in the dtype of ``features``, channels-last strided.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, h, w), got {tuple(features.shape)}")
    b, c, h, w = features.shape
    if masks.dim() != 4 or masks.shape[:2] != affines.shape[:2] or affines.shape[0] != b:
        raise ValueError(
            f"features {tuple(features.shape)}, affines {tuple(affines.shape)} and masks "
            f"{tuple(masks.shape)} must share the batch; affines and masks the part count"
        )
    with torch.autocast(device_type=features.device.type, enabled=False):
        pos = round_half_away_from_zero(sample_coordinates(affines, (h, w), masks.shape[-2:]))
        x, y = pos[..., 0], pos[..., 1]  # (B,P,h,w) integers
        keep = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1) & (resize_masks(masks, (h, w)) != 0)
        index = y.clamp(0, h - 1).long() * w + x.clamp(0, w - 1).long()
        index = torch.where(keep, index, torch.full_like(index, h * w))  # h*w: the zero row
    # Pixels as rows of C channels, plus the zero row every outside / masked-off index reads.
    rows = torch.cat([features.permute(0, 2, 3, 1).reshape(b, h * w, c), features.new_zeros(b, 1, c)], dim=1)
    out = _MaxOfRows.apply(rows, index.view(b, affines.shape[1], h * w))  # (B,h*w,C)
    return out.view(b, h, w, c).permute(0, 3, 1, 2)
