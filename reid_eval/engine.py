"""The torchreid side of a training run: its softmax engine on any device (autocast, channels-last
inputs), and the data manager, model and optimizer built from a resolved run (``reid_eval.train.RunPlan``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from reid_eval import compat
from reid_eval.models import MODEL_SPECS
from reid_eval.recipes import build_transforms

if TYPE_CHECKING:
    from reid_eval.train import RunPlan

__all__ = [
    "ReidSoftmaxEngine",
    "build_datamanager",
    "build_model",
    "build_optimizer",
    "pretrained_note",
    "resampling_loader",
]

_torchreid = compat.import_torchreid()


class ReidSoftmaxEngine(_torchreid.reid.engine.ImageSoftmaxEngine):
    """torchreid's ImageSoftmaxEngine on any device, with optional autocast and channels-last inputs.

    Per epoch it keeps the mean loss and training accuracy (``epoch_stats()``).
    """

    def __init__(
        self,
        datamanager,
        model,
        optimizer,
        scheduler,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        label_smooth: bool = False,
    ):
        super().__init__(
            datamanager, model, optimizer, scheduler=scheduler, use_gpu=device.type == "cuda", label_smooth=label_smooth
        )
        self.device, self.autocast_dtype, self.channels_last = device, autocast_dtype, channels_last
        self._sums = {"loss": 0.0, "acc": 0.0, "batches": 0}

    def _inputs(self, imgs: torch.Tensor) -> torch.Tensor:
        imgs = imgs.to(self.device, non_blocking=True)
        return imgs.contiguous(memory_format=torch.channels_last) if self.channels_last else imgs

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def forward_backward(self, data):
        imgs, pids = self.parse_data_for_train(data)
        imgs, pids = self._inputs(imgs), pids.to(self.device, non_blocking=True)
        with self._autocast():
            outputs = self.model(imgs)
        outputs = tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()
        loss, logits = self.losses(outputs, pids)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        summary = {"loss": loss.item(), "acc": _torchreid.reid.metrics.accuracy(logits, pids)[0].item()}
        self._sums["loss"] += summary["loss"]
        self._sums["acc"] += summary["acc"]
        self._sums["batches"] += 1
        return summary

    def losses(self, outputs, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of a batch's fp32 model outputs: torchreid's cross-entropy (``reid_eval.siamese`` adds
        verification)."""
        loss = self.compute_loss(self.criterion, outputs, pids)
        return loss, outputs[0] if isinstance(outputs, tuple) else outputs

    @torch.no_grad()
    def extract_features(self, input):
        with self._autocast():
            return self.model(self._inputs(input)).float()

    def epoch_stats(self) -> dict:
        """Mean loss and accuracy (%) over the batches since the last call, and their number."""
        n = max(1, self._sums["batches"])
        stats = {"loss": self._sums["loss"] / n, "acc": self._sums["acc"] / n, "batches": self._sums["batches"]}
        self._sums = {"loss": 0.0, "acc": 0.0, "batches": 0}
        return stats


# ------------------------------------------------------------------------------------------- builders
def build_datamanager(torchreid, name: str, plan: RunPlan, height: int, width: int):
    dm = torchreid.reid.data.ImageDataManager(
        root="",
        sources=name,
        targets=name,
        height=height,
        width=width,
        transforms=None,
        use_gpu=plan.device.type == "cuda",
        batch_size_train=plan.batch_size,
        batch_size_test=plan.recipe.batch_size_test,
        workers=plan.workers,
        train_sampler="RandomSampler",
    )
    # the recipe's transforms replace torchreid's string-built ones (Open-ReID's crop is not among them)
    train_tf, test_tf = build_transforms(plan.recipe, height, width)
    dm.transform_tr, dm.transform_te = train_tf, test_tf
    dm.train_loader.dataset.transform = train_tf
    for loaders in dm.test_loader.values():
        for loader in loaders.values():
            loader.dataset.transform = test_tf
    if plan.opts.loss == "siamese":  # identity-balanced batches, as many as the softmax training's
        from reid_eval.siamese import identity_batch_loader

        per_epoch = plan.opts.images_per_epoch or len(dm.train_loader.dataset)
        dm.train_loader = identity_batch_loader(dm.train_loader, per_epoch)
    elif plan.opts.images_per_epoch is not None:
        dm.train_loader = resampling_loader(dm.train_loader, plan.opts.images_per_epoch)
    return dm


def resampling_loader(loader: torch.utils.data.DataLoader, images_per_epoch: int) -> torch.utils.data.DataLoader:
    """``loader`` drawing ``images_per_epoch`` images per epoch uniformly with replacement (drop_last, as
    torchreid's): floor(images_per_epoch / batch) steps per epoch whatever the set's size. The sampler takes
    its seed from torch's global RNG at each epoch, like torchreid's RandomSampler, so the run's seed fixes
    the draws and a resumed run (global RNG restored) continues them."""
    sampler = torch.utils.data.RandomSampler(loader.dataset, replacement=True, num_samples=images_per_epoch)
    return torch.utils.data.DataLoader(
        loader.dataset,
        sampler=sampler,
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        drop_last=True,
    )


def build_model(plan: RunPlan, num_classes: int):
    from reid_eval.models import build_reid_model

    model_recipe = plan.recipe.model(plan.opts.model)
    pretrained = {"auto": model_recipe.pretrained, "off": False, "require": True}[plan.opts.pretrained]
    siamese = plan.opts.loss == "siamese"
    # torchreid's 'triplet' models return (logits, features) in training: what verification needs
    model, info = build_reid_model(
        model_recipe.architecture,
        num_classes,
        pretrained=pretrained,
        loss="triplet" if siamese else "softmax",
        **model_recipe.model_kwargs,
    )
    if info.imagenet_weights and hasattr(model, "pretrained_head_init"):
        model.pretrained_head_init()
    if siamese:
        from reid_eval.siamese import attach_verifier

        model = attach_verifier(model)
        info = replace(info, num_params=sum(p.numel() for p in model.parameters()))
    model = model.to(plan.device)
    if plan.recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, info, pretrained


def build_optimizer(torchreid, plan: RunPlan, model, imagenet: bool):
    from reid_eval.siamese import VERIFIER

    r, m = plan.recipe, plan.recipe.model(plan.opts.model)
    staged = imagenet and m.base_lr_mult != 1.0 and bool(m.new_layers)
    new_layers = list(m.new_layers) + ([VERIFIER] if plan.opts.loss == "siamese" else [])  # a new head: full rate
    optimizer = torchreid.reid.optim.build_optimizer(
        model,
        optim=r.optim,
        lr=m.lr,
        weight_decay=r.weight_decay,
        momentum=r.momentum,
        sgd_nesterov=r.nesterov,
        adam_beta1=r.adam_betas[0],
        adam_beta2=r.adam_betas[1],
        staged_lr=staged,
        new_layers=new_layers,
        base_lr_mult=m.base_lr_mult,
    )
    scheduler = compat.build_scheduler(optimizer, "single_step", stepsize=m.step_epochs, gamma=r.gamma)
    return optimizer, scheduler, staged


def pretrained_note(info, pretrained_choice) -> str:
    """Where the initial weights came from (ImageNet file, or why from scratch)."""
    from reid_eval.models import imagenet_weights_path

    spec = MODEL_SPECS[info.name]
    if info.imagenet_weights:
        return f"ImageNet weights loaded from {info.weights_file} ({info.loaded_tensors} tensors)"
    if spec.imagenet_file is None:
        return f"from scratch ({info.name} has no ImageNet weights; Open-ReID trains it from scratch)"
    if pretrained_choice is False:
        return "from scratch (ImageNet weights not used: --pretrained off or the recipe)"
    return (
        f"from scratch: ImageNet weights not found at {imagenet_weights_path(spec.imagenet_file)} "
        "(nothing is downloaded; place the file there to use them)"
    )
