"""The parity gate: each exported variant against the PyTorch reference on a set of real texts."""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tastemap.errors import InputError
from tastemap.export.source import SourceModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityGate:
    """Thresholds a variant must meet against the fp32 PyTorch reference.

    ``min_top10_overlap`` is the mean share of each text's 10 nearest neighbours (within the
    validation set) that the variant and the reference agree on.
    """

    min_mean_cosine: float
    min_cosine: float = 0.0
    min_top10_overlap: float = 0.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name}={value} must be between 0 and 1")

    @classmethod
    def fp32(cls) -> "ParityGate":
        return cls(min_mean_cosine=0.99999, min_cosine=0.9999, min_top10_overlap=0.95)

    @classmethod
    def int8(cls) -> "ParityGate":
        return cls(min_mean_cosine=0.99, min_cosine=0.95, min_top10_overlap=0.85)

    @classmethod
    def fp16(cls) -> "ParityGate":
        return cls(min_mean_cosine=0.999, min_cosine=0.99, min_top10_overlap=0.9)

    def failures(self, figures: "ParityFigures") -> list[str]:
        """The rules ``figures`` break, as readable strings (empty when the gate passes)."""
        checks = (
            ("mean_cosine", figures.mean_cosine, self.min_mean_cosine),
            ("min_cosine", figures.min_cosine, self.min_cosine),
            ("top10_overlap", figures.top10_overlap, self.min_top10_overlap),
        )
        return [f"{name}={value:.7f} < {limit}" for name, value, limit in checks if value < limit]


@dataclass(frozen=True)
class ParityFigures:
    mean_cosine: float
    min_cosine: float
    top10_overlap: float
    n_texts: int

    def to_dict(self) -> dict:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


def validation_texts(path: str | Path | None = None) -> list[str]:
    """The texts of the gate: a user file (one text per line) or the built-in set.

    The built-in set is 160 MovieLens item texts and 40 plain sentences.
    """
    if path is None:
        return resources.files("tastemap.export").joinpath("data/validation.txt").read_text("utf-8").splitlines()
    return read_text_lines(Path(path))


def read_text_lines(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, with errors naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start})") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise InputError(f"{path} has {len(lines)} non-empty lines; at least 2 texts are needed")
    return lines


def reference_embeddings(source: SourceModel, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embeddings from the PyTorch model, pooled and normalized as the ONNX graph does: [n, dim] float32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
    model = AutoModel.from_pretrained(source.path, local_files_only=True).eval()
    accepted = inspect.signature(model.forward).parameters
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=source.max_seq_len,
                return_tensors="pt",
            )
            hidden = model(**{k: v for k, v in batch.items() if k in accepted}).last_hidden_state
            chunks.append(_pool(hidden, batch["attention_mask"], source.pooling))
    vectors = torch.cat(chunks)
    return torch.nn.functional.normalize(vectors, p=2, dim=1, eps=1e-12).numpy().astype(np.float32)


def _pool(hidden, mask, pooling: str):
    import torch

    mask = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "max":
        return (hidden + (1 - mask) * -1e9).max(dim=1).values
    return (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)


def compare(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> ParityFigures:
    """Cosine and top-``k`` neighbour agreement between two [n, dim] sets of unit vectors."""
    cosines = np.sum(_unit(reference) * _unit(candidate), axis=1)
    k = min(k, len(reference) - 1)
    return ParityFigures(
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        top10_overlap=float(_neighbour_overlap(_unit(reference), _unit(candidate), k)),
        n_texts=len(reference),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k over rows, self excluded."""
    def top_k(x):
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    top_a, top_b = top_k(a), top_k(b)
    shared = [len(np.intersect1d(row_a, row_b)) for row_a, row_b in zip(top_a, top_b)]
    return float(np.mean(shared)) / k


def onnx_embeddings(model_path: Path, tokenizer_path: Path, texts: list[str], max_seq_len: int,
                    batch_size: int = 32, providers: list[str] | None = None,
                    graph_optimization: str = "basic") -> np.ndarray:
    """Run an exported graph on ``texts`` in padded batches (the gate's runner): [n, dim] float32.

    ``graph_optimization`` is the ONNX Runtime level the variant will run at, so the gate
    measures what the runtime executes.
    """
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from tastemap.package import graph_optimization_level

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_seq_len)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = graph_optimization_level(graph_optimization)
    session = ort.InferenceSession(str(model_path), options, providers=providers or ["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    chunks = []
    for start in range(0, len(texts), batch_size):
        encodings = tokenizer.encode_batch(texts[start : start + batch_size])
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        chunks.append(session.run(None, {k: v for k, v in feeds.items() if k in names})[0])
    return np.concatenate(chunks).astype(np.float32)
