"""Static int8 (QDQ) quantization calibrated on the user's texts (``--calibration``).

Dynamic per-token quantization (:mod:`tastemap.export.quantize`) is the default: it was measured
both more accurate and faster. Static QDQ suits deployments whose runtime wants fixed scales.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize_static_int8(fp32_path: Path, out_path: Path, feeds: dict[str, np.ndarray], batch_size: int = 16) -> None:
    """Per-channel QDQ int8 of the MatMuls, activation ranges calibrated (MinMax) on ``feeds``.

    ``reduce_range`` keeps the weights within 7 bits, so that CPUs whose u8·s8 kernel adds pairs of
    products into a saturating int16 (AVX2, AVX-512 without VNNI) compute the exact product too,
    as in :mod:`tastemap.export.quantize`.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            n = len(next(iter(feeds.values())))
            self._batches = iter(
                [{k: v[i : i + batch_size] for k, v in feeds.items()} for i in range(0, n, batch_size)]
            )

        def get_next(self):
            return next(self._batches, None)

    quantize_static(
        str(fp32_path),
        str(out_path),
        Batches(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=True,
    )
