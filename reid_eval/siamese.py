"""The Discriminative Embedding (Zheng, Zheng, Yang, ACM TOMM 2017) as a torchreid training: identification +
verification on identity-balanced batches (``reid_eval.train --loss siamese``).

The paper's siamese network shares one CNN between two images and trains it with two losses at once: each
image's identity (softmax cross-entropy, the IDE loss) and whether the two are the same person (a verification
head: the squared difference of the two embeddings, ``(f_i - f_j)^2``, through a 1x1 convolution, i.e. a
``Linear(D, 2)``, and a 2-way softmax), the two losses weighted equally. Here, in torchreid's terms:

- the model is built with ``loss='triplet'``, torchreid's convention for a model returning ``(logits, features)``
  in training (the Open-ReID heads: their 128-d embedding; torchreid's ``resnet50``: the pooled 2048-d feature,
  the paper's); :func:`attach_verifier` adds the verification head as the model's ``verifier`` submodule, so the
  optimizer, the checkpoint and the resume see it;
- :class:`IdentityBatchSampler` forms batches of P identities x ``NUM_INSTANCES`` images, like torchreid's
  ``RandomIdentitySampler``, but with a fixed number of batches per epoch, floor(N / batch) for N images per
  epoch (the set's size or ``--images-per-epoch``), drawn from torch's RNG: the same steps as the softmax
  training of the same set and length (torchreid's sampler estimates its length, drops the batches it cannot
  fill and draws from Python's ``random``);
- :class:`ReidSiameseEngine` (our softmax engine) forms, inside each batch, one positive partner (same identity,
  another image) and one negative partner (another identity) per image, both at random: as many negative pairs
  as positive ones (the paper's 1:1), no pair enumerated by a Python loop; loss = identity CE + verification CE.

Retrieval uses the model's usual eval output (the training's own evaluation) and, for Table 4, the pooled
features (``reid_eval.features``) with the Euclidean distance, as the paper tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid_eval.engine import ReidSoftmaxEngine

__all__ = [
    "VERIFIER",
    "NUM_INSTANCES",
    "attach_verifier",
    "IdentityBatchSampler",
    "identity_batch_loader",
    "verification_pairs",
    "ReidSiameseEngine",
]

VERIFIER = "verifier"  # the verification head's name in the model (and its state dict)
NUM_INSTANCES = 4  # images per identity in a batch (torchreid's default)


def feature_dim(model: nn.Module) -> int:
    """D of the training features a model returns with loss 'triplet' (torchreid ResNets: ``feature_dim``;
    the Open-ReID Inception: ``num_features``)."""
    return int(getattr(model, "feature_dim", None) or model.num_features)


def attach_verifier(model: nn.Module) -> nn.Module:
    """Add the verification head Linear(D, 2) as ``model.verifier`` (N(0, 0.001) weights, zero bias, as the
    Open-ReID heads initialise their linear layers); returns the model."""
    head = nn.Linear(feature_dim(model), 2)
    nn.init.normal_(head.weight, std=0.001)
    nn.init.zeros_(head.bias)
    model.add_module(VERIFIER, head)
    return model


class IdentityBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size // num_instances`` identities x ``num_instances`` images, ``num_samples //
    batch_size`` of them per epoch. Identities are drawn without replacement within a batch, an identity's
    images without replacement when it has enough, else with. ``labels``: (N,) identity of each image."""

    def __init__(self, labels, batch_size: int, num_instances: int, num_samples: int):
        labels = torch.as_tensor(labels)
        self.ids, inverse = torch.unique(labels, return_inverse=True)
        self.members = [torch.nonzero(inverse == i).flatten() for i in range(len(self.ids))]
        self.per_batch, self.num_instances = batch_size // num_instances, num_instances
        if self.per_batch < 2 or self.per_batch > len(self.ids):
            raise ValueError(
                f"batch {batch_size} holds {self.per_batch} identities of {num_instances} images; verification "
                f"needs 2 to {len(self.ids)} (the training set's identities)"
            )
        self.batches = num_samples // batch_size

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            batch = []
            for i in torch.randperm(len(self.ids))[: self.per_batch].tolist():
                members = self.members[i]
                if len(members) >= self.num_instances:
                    pick = torch.randperm(len(members))[: self.num_instances]
                else:
                    pick = torch.randint(len(members), (self.num_instances,))
                batch += members[pick].tolist()
            yield batch


def identity_batch_loader(
    loader: torch.utils.data.DataLoader, images_per_epoch: int, num_instances: int = NUM_INSTANCES
) -> torch.utils.data.DataLoader:
    """``loader``'s dataset in identity-balanced batches of ``loader.batch_size``, floor(images_per_epoch /
    batch) per epoch (the training labels: the dataset's torchreid items)."""
    labels = [item[1] for item in loader.dataset.data]
    sampler = IdentityBatchSampler(labels, loader.batch_size, num_instances, images_per_epoch)
    return torch.utils.data.DataLoader(
        loader.dataset, batch_sampler=sampler, num_workers=loader.num_workers, pin_memory=loader.pin_memory
    )


def verification_pairs(pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first, second, same) of the verification pairs of a batch with identities ``pids`` (B,): every image
    that has both another image of its identity and an image of another identity in the batch gets one of
    each, chosen at random (torch's RNG); ``same`` (2P,) is 1 for the P positive pairs, 0 for the P negative."""
    same_id = pids[:, None] == pids[None, :]
    positive = same_id & ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    scores = torch.rand(same_id.shape, device=pids.device)  # a random partner: the highest score in the mask
    anchors = torch.nonzero(positive.any(1) & (~same_id).any(1)).flatten()
    pos = torch.where(positive, scores, -1.0).argmax(1)[anchors]
    neg = torch.where(~same_id, scores, -1.0).argmax(1)[anchors]
    same = torch.cat([torch.ones_like(anchors), torch.zeros_like(anchors)])
    return torch.cat([anchors, anchors]), torch.cat([pos, neg]), same


class ReidSiameseEngine(ReidSoftmaxEngine):
    """Identification + verification (the module docstring); the model returns (logits, features) in training
    and has a ``verifier`` head (:func:`attach_verifier`)."""

    def losses(self, outputs, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = outputs
        first, second, same = verification_pairs(pids)
        identification = self.criterion(logits, pids)
        if len(same) == 0:  # no identity with two images in the batch: identification only
            return identification, logits
        verifier = getattr(self.model, VERIFIER)
        verification = F.cross_entropy(verifier((features[first] - features[second]).pow(2)), same)
        return identification + verification, logits
