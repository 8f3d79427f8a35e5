"""The text encoder: a model package run by ONNX Runtime in padding-aware batches.

>>> from tastemap.paths import default_model_dir
>>> encoder = Encoder(default_model_dir())
>>> encoder.encode(["The Matrix (1999)", "Toy Story (1995)"]).shape
(2, 384)

The constructor only stores parameters; :meth:`Encoder.load` (or the first :meth:`Encoder.encode`)
reads the package, picks the provider and variant (see :mod:`tastemap.runtime.encode.providers`) and
creates the session. Identical texts are encoded once, cached texts not at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

import numpy as np

from tastemap.cpu import SATURATING_INT8_CLASSES, cpu_info, usable_cores
from tastemap.errors import DeviceError, InputError, ModelPackageError
from tastemap.runtime.encode.batching import dedupe, pad_batch, plan_batches, tokenize_ahead
from tastemap.runtime.encode.providers import (
    Device,
    ExecutionPlan,
    available_providers,
    create_session,
    parse_device,
    parse_variant,
    plan_execution,
)

logger = logging.getLogger(__name__)

# Padded tokens per batch, by device. On the CPU smaller batches keep each operator's activations
# in the core's own cache (at 512 tokens a MiniLM layer's widest activation is 3 MB in float): on
# an AMX Xeon at 2 threads MiniLM int8 ran 1.3-1.4x faster at 512 than at 2,048 on item texts and
# 1.5x on 256-token documents, fp32 1.0-1.2x (docs/performance/int8.md). A GPU wants larger batches.
CPU_MAX_TOKENS = 512
GPU_MAX_TOKENS = 2048
DEFAULT_MAX_TOKENS = None  # CPU_MAX_TOKENS or GPU_MAX_TOKENS, by the device the encoder runs on
DEFAULT_CHUNK_ROWS = 8192  # rows read, encoded and written at a time by encode_to_file


@dataclass(frozen=True)
class EncoderConfig:
    """What the caller asked for; validated at construction.

    ``max_tokens`` is the budget of padded tokens per batch (``None``: :data:`CPU_MAX_TOKENS` on
    the CPU, :data:`GPU_MAX_TOKENS` on a GPU), ``max_batch_size`` caps the texts per
    batch, ``max_padding`` the largest fraction of padding tokens a batch may hold (a batch ends
    where the next text is too short), ``pad_multiple`` rounds each batch's length up (fewer
    distinct shapes), ``window`` is
    how many texts are tokenized and sorted together. ``cpu_arena`` keeps ONNX Runtime's CPU
    arena: it grows to the largest batch and then stays flat, since the token budget bounds every
    batch (measured by ``bench/encoder_memory.py``: flat resident memory across thousands of
    batch shapes, and faster than allocating each batch anew).
    """

    variant: str = "auto"
    device: str = "auto"
    threads: int | None = None
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    max_batch_size: int = 256
    max_padding: float = 0.1
    pad_multiple: int = 1
    window: int = 4096
    cpu_arena: bool = True
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", parse_variant(self.variant).value)
        object.__setattr__(self, "device", parse_device(self.device).value)
        for name in ("max_tokens", "max_batch_size", "pad_multiple", "window"):
            value = getattr(self, name)
            if name == "max_tokens" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}={value!r} should be an integer >= 1")
        if not isinstance(self.max_padding, (int, float)) or not 0 <= self.max_padding <= 1:
            raise InputError(f"max_padding={self.max_padding!r} should be a number in [0, 1]")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads={self.threads!r} should be None (all usable cores) or an integer >= 1")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))


@dataclass
class EncodeStats:
    """Counters over every :meth:`Encoder.encode` call of one encoder.

    ``texts`` received, ``unique`` after dedupe, ``cached`` served from the cache, ``encoded`` run
    through the model; of the encoded texts, ``tokens`` real tokens, ``padded_tokens`` tokens
    including padding and ``truncated`` texts cut at the model's maximum length; ``empty`` texts
    received that were empty or whitespace only, ``batches`` model calls, ``seconds`` wall time.
    """

    texts: int = 0
    unique: int = 0
    cached: int = 0
    encoded: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    truncated: int = 0
    empty: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data.update(texts_per_second=self.texts_per_second, tokens_per_second=self.tokens_per_second)
        return data


class Encoder:
    """Encode texts into unit vectors with an exported model package.

    Parameters are stored, not used, until :meth:`load`. ``variant`` and ``device`` take
    ``"auto"`` (fp16 on CUDA when onnxruntime-gpu attaches to a GPU, else int8 on the CPU, with a
    logged warning on fallback); ``threads`` defaults to the cores in the process's CPU affinity
    mask. ``cache_dir`` enables the on-disk cache (:mod:`tastemap.runtime.encode.cache`).

    After loading, ``provider``, ``variant``, ``device``, ``threads`` and ``max_tokens`` report
    what is actually used, and ``stats`` (:class:`EncodeStats`) accumulates counters over calls.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        variant: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        max_batch_size: int = 256,
        max_padding: float = 0.1,
        pad_multiple: int = 1,
        window: int = 4096,
        cpu_arena: bool = True,
        cache_dir: str | Path | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.config = EncoderConfig(
            variant=variant,
            device=device,
            threads=threads,
            max_tokens=max_tokens,
            max_batch_size=max_batch_size,
            max_padding=max_padding,
            pad_multiple=pad_multiple,
            window=window,
            cpu_arena=cpu_arena,
            cache_dir=cache_dir,
        )
        self.stats = EncodeStats()
        self.package = None
        self._session = None
        self._plan: ExecutionPlan | None = None

    def load(self) -> "Encoder":
        """Read the package, choose provider and variant, create the session (once)."""
        if self._session is not None:
            return self
        from tastemap.package import ModelPackage
        from tastemap.runtime.encode.cache import EmbeddingCache, model_key

        package = ModelPackage.load(self.model_dir)
        threads = self.config.threads or usable_cores()
        plan, session = self._create_session(package, threads)
        if plan.fallback:
            logger.warning(
                "auto selection fell back to %s with the %s variant: %s",
                plan.providers[0],
                plan.variant,
                plan.fallback,
            )
        if plan.device is Device.cpu and plan.variant == "fp16":
            logger.warning("the fp16 variant runs slowly on the CPU; use variant='int8' or 'fp32'")
        if plan.device is not Device.cpu and plan.variant == "int8":
            logger.warning("the int8 variant is built for the CPU; on a GPU use variant='fp16'")
        isa = cpu_info().isa
        if not package.variant(plan.variant).exact_on_every_cpu and isa in SATURATING_INT8_CLASSES:
            logger.warning(
                "%s was exported by an older tastemap with int8 weights beyond ±64, which saturate on "
                "this CPU (%s, no VNNI) and give wrong embeddings; export it again with `tastemap export`",
                package.variant(plan.variant).file, isa,
            )
        check_session(package, session)
        self.package = package
        self._plan, self._session, self._threads = plan, session, threads
        self._max_tokens = self.config.max_tokens or (
            CPU_MAX_TOKENS if plan.device is Device.cpu else GPU_MAX_TOKENS)
        self._tokenizer = package.load_tokenizer()
        self._output = package.output_name
        self._cache = None
        if self.config.cache_dir is not None:
            key = model_key(
                package.variant(plan.variant).sha256,
                package.manifest["tokenizer"]["files"]["tokenizer.json"],
                package.max_seq_len,
            )
            self._cache = EmbeddingCache(
                self.config.cache_dir, key=key, variant=plan.variant, dim=package.embedding_dim
            )
        logger.info(
            "encoder %s: provider=%s variant=%s threads=%d cpu=%s",
            package.name,
            self.provider,
            plan.variant,
            threads,
            isa,
        )
        return self

    def _create_session(self, package, threads: int):
        available = available_providers()
        plan = plan_execution(self.config.device, self.config.variant, list(package.variants), available)
        try:
            return plan, self._session_for(package, plan, threads)
        except DeviceError as exc:
            if self.config.device != Device.auto.value or plan.device is Device.cpu:
                raise
            cpu = plan_execution(Device.cpu, self.config.variant, list(package.variants), available)
            cpu = ExecutionPlan(
                device=cpu.device,
                providers=cpu.providers,
                variant=cpu.variant,
                fallback="; ".join(filter(None, [str(exc), cpu.fallback])),
            )
            return cpu, self._session_for(package, cpu, threads)

    def _session_for(self, package, plan, threads: int):
        return create_session(
            package.variant_path(plan.variant),
            plan,
            threads,
            cpu_arena=self.config.cpu_arena,
            graph_optimization=package.variant(plan.variant).ort_graph_optimization,
        )

    @property
    def provider(self) -> str:
        """The execution provider that attached, e.g. ``CPUExecutionProvider``."""
        self.load()
        return self._session.get_providers()[0]

    @property
    def variant(self) -> str:
        """The variant loaded: ``fp32``, ``int8`` or ``fp16``."""
        return self.load()._plan.variant

    @property
    def device(self) -> str:
        """The device used: ``cpu``, ``cuda`` or ``tensorrt``."""
        return self.load()._plan.device.value

    @property
    def threads(self) -> int:
        """ONNX Runtime intra-op threads."""
        return self.load()._threads

    @property
    def max_tokens(self) -> int:
        """Padded tokens per batch: the one asked for, else the default of the device used."""
        return self.load()._max_tokens

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.load().package.embedding_dim

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Encode ``texts`` into float32 unit vectors, shape ``[len(texts), dim]``, in input order.

        Empty or whitespace-only strings are valid: the model sees only its special tokens, so all
        of them get the same vector (counted in ``stats.empty``). Texts longer than the model's
        maximum length are truncated (counted in ``stats.truncated``). ``None``, NaN and non-string
        values raise :class:`InputError` naming their position.
        """
        texts = check_texts(texts)
        self.load()
        started = time.perf_counter()
        unique, inverse = dedupe(texts)
        vectors = np.empty((len(unique), self.package.embedding_dim), dtype=np.float32)
        todo = np.arange(len(unique))
        hashes: list[bytes] = []
        if self._cache is not None and unique:
            from tastemap.runtime.encode.cache import hash_text

            hashes = [hash_text(text) for text in unique]
            found, cached = self._cache.get(hashes)
            vectors[found] = cached
            todo = np.setdiff1d(todo, found, assume_unique=True)
        self._encode_into(vectors, [unique[i] for i in todo], todo, hashes)
        self.stats.texts += len(texts)
        self.stats.unique += len(unique)
        self.stats.cached += len(unique) - len(todo)
        self.stats.encoded += len(todo)
        self.stats.empty += sum(1 for text in texts if not text.strip())
        self.stats.seconds += time.perf_counter() - started
        return vectors[inverse]

    def _encode_into(self, vectors: np.ndarray, texts: list[str], rows: np.ndarray, hashes: list[bytes]) -> None:
        """Encode ``texts`` and write their vectors to ``vectors[rows]``."""
        config, package = self.config, self.package
        for start, encodings in tokenize_ahead(self._tokenizer, texts, config.window):
            lengths = np.fromiter((len(item.ids) for item in encodings), dtype=np.int64, count=len(encodings))
            self.stats.tokens += int(lengths.sum())
            self.stats.truncated += sum(1 for item in encodings if item.overflowing)
            window_rows = rows[start : start + len(encodings)]
            for batch in plan_batches(
                lengths,
                max_tokens=self._max_tokens,
                max_batch_size=config.max_batch_size,
                max_padding=config.max_padding,
                pad_multiple=config.pad_multiple,
                max_len=package.max_seq_len,
            ):
                inputs = pad_batch(
                    [encodings[i] for i in batch],
                    package.input_names,
                    pad_token_id=package.pad_token_id,
                    pad_multiple=config.pad_multiple,
                    max_len=package.max_seq_len,
                )
                vectors[window_rows[batch]] = self._run(inputs)
                self.stats.batches += 1
                self.stats.padded_tokens += inputs["input_ids"].size
            if self._cache is not None:
                self._cache.put([hashes[row] for row in window_rows], vectors[window_rows])

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One model call: int64 inputs ``[batch, seq]`` to float32 embeddings ``[batch, dim]``."""
        if self._plan.device is Device.cpu:
            output = self._session.run([self._output], inputs)[0]
        else:
            import onnxruntime as ort

            binding = self._session.io_binding()
            for name, array in inputs.items():
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
            binding.bind_output(self._output, "cuda", 0)
            self._session.run_with_iobinding(binding)
            output = binding.copy_outputs_to_cpu()[0]
        if output.ndim != 2 or output.shape[1] != self.package.embedding_dim:
            raise ModelPackageError(f"{self.model_dir}: the model gives outputs of shape {list(output.shape)}, the "
                                    f"manifest says embedding_dim={self.package.embedding_dim}; re-export the package")
        return output.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"Encoder({str(self.model_dir)!r}, variant={self.config.variant!r}, device={self.config.device!r})"


def check_session(package, session) -> None:
    """Raise :class:`ModelPackageError` when the ONNX graph does not have the inputs, the output and
    the embedding dimension the package's manifest states."""
    inputs = {item.name for item in session.get_inputs()}
    missing = [name for name in package.input_names if name not in inputs]
    outputs = {item.name: item.shape for item in session.get_outputs()}
    where = f"{package.path}: the ONNX model"
    if missing:
        raise ModelPackageError(f"{where} lacks the input(s) {missing} of the manifest (it has {sorted(inputs)}); "
                                "re-export the package")
    if package.output_name not in outputs:
        raise ModelPackageError(f"{where} has no output {package.output_name!r} (it has {sorted(outputs)}); "
                                "re-export the package")
    dim = outputs[package.output_name][-1] if outputs[package.output_name] else None
    if isinstance(dim, int) and dim != package.embedding_dim:
        raise ModelPackageError(f"{where} gives vectors of {dim} dimensions, the manifest says "
                                f"embedding_dim={package.embedding_dim}; re-export the package")


def check_texts(texts: Iterable[str]) -> list[str]:
    """``texts`` as a list of str, or :class:`InputError` naming the first bad position."""
    if isinstance(texts, (str, bytes)):
        raise InputError(f"texts should be a list of str, got a single {type(texts).__name__}; wrap it in a list")
    checked = list(texts)
    for position, text in enumerate(checked):
        if not isinstance(text, str):
            from tastemap.runtime.io.tables import describe_value

            raise InputError(f"texts[{position}] is {describe_value(text)}; every text should be a str")
    return checked
