"""tastemap: layered, clustered user-interest models with an exported BERT encoder.

Stages are subpackages: :mod:`tastemap.export` (encoder to a quantized ONNX model package),
:mod:`tastemap.runtime` (batched inference, interest layers, clustering, recommendation) and
:mod:`tastemap.bench` (throughput, latency and quality figures).
"""

__version__ = "0.1.0"
