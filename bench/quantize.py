"""Static int8 quantization of an exported feature model (onnxruntime).

The exported graph takes uint8 NHWC pixels and does its own scaling
(Transpose, Cast, Sub, Div) before the backbone, and ends with a float
mean-pool and L2 normalisation. Only the backbone's Conv (and residual Add)
nodes are quantized: the uint8 input, the preprocessing and the float head
are left exactly as exported, so the quantized model is a drop-in
replacement for `Embedder`.

Measured and not adopted (bench/int8_quality.py, 2-core AVX2 CPU without VNNI):
int8 ran slower than fp32 and kept only 0.86 recall@10 against the fp32
neighbours, so the indexer ships fp32. It lives in bench/ for re-measuring on
other CPUs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DEFAULT_OP_TYPES = ("Conv", "Add")


class _PixelReader:
    """CalibrationDataReader over a uint8 (N, S, S, 3) array, in batches."""

    def __init__(self, input_name: str, pixels: np.ndarray, batch: int) -> None:
        self._input_name = input_name
        self._pixels = pixels
        self._batch = batch
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self._pixels), self._batch):
            chunk = np.ascontiguousarray(self._pixels[start : start + self._batch])
            yield {self._input_name: chunk}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def _group(node) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def quantize_static_int8(
    fp32_path: Path,
    dest: Path,
    calibration_pixels: np.ndarray,
    *,
    quant_format: str = "QDQ",
    per_channel: bool = True,
    reduce_range: bool = True,
    calibrate_method: str = "MinMax",
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES,
    exclude_first_conv: bool = True,
    exclude_depthwise: bool = True,
    exclude_nodes: tuple[str, ...] = (),
    preprocess: bool = True,
    batch: int = 16,
) -> Path:
    """Write a static-int8 copy of `fp32_path` to `dest` (atomically) and return `dest`.

    `calibration_pixels` is uint8 (N, S, S, 3), the same input the model takes.
    Weights are signed int8 (per output channel by default), activations uint8.

    The defaults are the most faithful setting measured (bench/int8_quality.py
    on EfficientNet-Lite0): the stem conv and the depthwise convs stay float
    (quantizing them alone drops mean fp32-vs-int8 cosine to ~0.80), and
    reduce_range uses 7-bit weights, which avoids u8s8 saturation on CPUs
    without VNNI. Even so recall@10 against fp32 is only ~0.86.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pixels = np.asarray(calibration_pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError("calibration_pixels must be uint8 (N, S, S, 3)")
    if len(pixels) == 0:
        raise ValueError("calibration_pixels is empty")

    fp32_path, dest = Path(fp32_path), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=dest.parent) as work:
        work_dir = Path(work)
        source = fp32_path
        if preprocess:
            # onnx shape inference + onnx optimisation: gives the quantizer the
            # tensor shapes it needs and folds what can be folded. ORT's symbolic
            # shape inference is skipped: it fails on the head's Expand (the
            # exported normalisation broadcasts to a runtime shape), and onnx's
            # own inference covers every op here.
            source = work_dir / "pre.onnx"
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)

        model = onnx.load(str(source))
        input_name = model.graph.input[0].name
        conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
        exclude = list(exclude_nodes)
        if exclude_first_conv and conv_nodes:
            exclude.append(conv_nodes[0].name)
        if exclude_depthwise:
            exclude += [n.name for n in conv_nodes if _group(n) > 1]
        del model

        out = work_dir / "int8.onnx"
        quantize_static(
            str(source),
            str(out),
            _PixelReader(input_name, pixels, batch),
            quant_format=QuantFormat.QDQ
            if quant_format.upper() == "QDQ"
            else QuantFormat.QOperator,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=exclude,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, calibrate_method),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )

        fd, tmp = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=dest.parent)
        os.close(fd)
        try:
            with open(out, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dest
