"""Batched inference with onnxruntime over a snapshot's exported model.

No torch here: the service embeds queries with this too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .concept_scores import top_concepts

Top = tuple[np.ndarray, np.ndarray]  # one image's top classes and their probabilities


def available_providers(preferred: str = "auto") -> list[str]:
    """CUDA when onnxruntime has it and `preferred` allows, else CPU."""
    if preferred not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {preferred!r}")
    have = ort.get_available_providers()
    if preferred in ("auto", "cuda") and "CUDAExecutionProvider" in have:
        _preload_cuda_libraries()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preferred == "cuda":
        raise ValueError(
            "--device cuda: this onnxruntime has no CUDAExecutionProvider"
            " (install onnxruntime-gpu in place of onnxruntime; README, GPU)"
        )
    return ["CPUExecutionProvider"]


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages that onnxruntime-gpu[cuda,cudnn]
    installs: the dynamic loader does not look there, and without them onnxruntime
    quietly runs the session on the CPU."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu 1.21+
    if preload is not None:
        preload()


class Embedder:
    """An onnxruntime session: uint8 (N, S, S, 3) pixels -> float32 (N, D) unit vectors,
    and, where the model has the output (indexer.models.output_names), the (N, C)
    class probabilities of the same pass."""

    def __init__(self, model_path: Path, threads: int = 0, device: str = "auto") -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime picks (all cores)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle inference threads must not spin: decode threads need those cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.model_path = Path(model_path)
        self._session = ort.InferenceSession(
            str(model_path), options, providers=available_providers(device)
        )
        # onnxruntime falls back to the CPU when the CUDA provider cannot start (no GPU,
        # driver or libraries): fine for auto, an error for an explicit cuda.
        self.providers: list[str] = self._session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise ValueError(
                "--device cuda: onnxruntime could not start CUDA (no GPU, or the driver or"
                " the CUDA/cuDNN libraries are missing; its warning above says which)"
            )
        inp = self._session.get_inputs()[0]
        outputs = {out.name: out for out in self._session.get_outputs()}
        self._input_name = inp.name
        self._features = self._session.get_outputs()[0].name
        self.input_size = int(inp.shape[1])
        self.dim = int(self._session.get_outputs()[0].shape[1])
        # Models exported before the classifier output (snapshots of older builds) lack it.
        self.classes = int(outputs["concepts"].shape[1]) if "concepts" in outputs else 0

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """The unit feature vectors of `pixels`."""
        return self._run(pixels, [self._features])[0]

    def embed_with_concepts(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The feature vectors and the class probabilities (None without the output)."""
        if not self.classes:
            return self.embed(pixels), None
        vectors, probs = self._run(pixels, [self._features, "concepts"])
        return vectors, probs

    def embed_with_top(self, pixels: np.ndarray) -> tuple[np.ndarray, list[Top | None]]:
        """The feature vectors and each image's top concepts (concept_scores.top_concepts),
        None for each without a classifier: what indexing keeps."""
        vectors, probs = self.embed_with_concepts(pixels)
        if probs is None:
            return vectors, [None] * len(vectors)
        classes, top = top_concepts(probs)
        return vectors, list(zip(classes, top, strict=True))

    def _run(self, pixels: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if pixels.ndim != 4 or pixels.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3) pixels")
        out = self._session.run(names, {self._input_name: np.ascontiguousarray(pixels)})
        return [np.asarray(o, dtype=np.float32) for o in out]
