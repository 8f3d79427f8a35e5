"""The model package format, kept importable under its old name: it lives in :mod:`tastemap.package`."""

from tastemap.package import (  # noqa: F401
    MANIFEST,
    SCHEMA_VERSION,
    TOKENIZER_FILES,
    VARIANT_FILES,
    ModelPackage,
    VariantInfo,
    atomic_directory,
    graph_optimization_level,
    sha256_file,
)
