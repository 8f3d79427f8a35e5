"""Text to vectors: the ONNX encoder, token-budget batching, execution providers, the embedding cache and streaming to files."""
