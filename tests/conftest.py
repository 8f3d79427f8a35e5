"""Shared fixtures: tiny randomly initialised BERT folders and model packages exported from them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# the test folders mirror the package's domains; their shared helpers (planted.py, local_spark.py,
# browser.py) sit here, importable from every folder
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "the a of and to in is on with for at by from as this that it be are was movie film story love war "
    "comedy drama action thriller horror romance sci fi adventure animation children fantasy crime mystery "
    "documentary musical western genres man woman dog cat city night day life world time new old good bad "
    "space king queen ship star dark light dead house game red blue"
).split()


def make_tiny_bert(folder: Path, *, hidden_size: int = 32, architecture: str = "bert", pooling: str | None = None,
                   seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer BERT (or DistilBERT, which has no token_type_ids) to ``folder``.

    ``pooling`` ('mean', 'cls' or 'max') adds a sentence-transformers Pooling module config.
    """
    import json

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel

    folder.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,:;!?()'-&", *letters, *(f"##{c}" for c in letters), *WORDS]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    # DistilBERT tokenizers return no token_type_ids, as the real ones do.
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if architecture == "bert" else [])
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=128, model_input_names=input_names)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    vocab_size = len(dict.fromkeys(vocab))
    if architecture == "distilbert":
        config = DistilBertConfig(vocab_size=vocab_size, dim=hidden_size, n_layers=2, n_heads=4,
                                  hidden_dim=hidden_size * 2, max_position_embeddings=128)
        DistilBertModel(config).eval().save_pretrained(folder)
    else:
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=hidden_size * 2, max_position_embeddings=128)
        BertModel(config).eval().save_pretrained(folder)
    if pooling is not None:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": hidden_size,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": pooling == "max",
        }))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT folder (hidden 32, two token types, no pooling config: mean pooling)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


def tiny_gates() -> dict:
    """The default gates without the neighbour-overlap rule.

    A random tiny model maps every text to nearly the same direction, so its nearest-neighbour
    order is a matter of ties and says nothing about the export.
    """
    from tastemap.export import ParityGate

    gates = {"fp32": ParityGate.fp32(), "int8": ParityGate.int8(), "fp16": ParityGate.fp16()}
    return {name: ParityGate(min_mean_cosine=g.min_mean_cosine, min_cosine=g.min_cosine) for name, g in gates.items()}


@pytest.fixture(scope="session")
def tiny_package(tiny_bert, tmp_path_factory) -> Path:
    """A model package exported from :func:`tiny_bert` with fp32 and int8 variants."""
    from tastemap.export import ExportConfig, export_model

    out = tmp_path_factory.mktemp("packages") / "tiny"
    export_model(ExportConfig(out=out, source=tiny_bert, variants=("fp32", "int8"), gates=tiny_gates()))
    return out


@pytest.fixture(scope="session")
def minilm_package(tmp_path_factory) -> Path:
    """The real all-MiniLM-L6-v2 exported to fp32 and int8 (tens of seconds; use in slow tests)."""
    from tastemap.export import ExportConfig, export_model

    out = tmp_path_factory.mktemp("packages") / "all-MiniLM-L6-v2"
    export_model(ExportConfig(out=out, variants=("fp32", "int8")))
    return out
