"""Reading the inputs: one table reader (CSV, TSV, Parquet, JSON lines, gzip), events and catalog
validation, the interactions matrix, precomputed item vectors, and synthetic logs with planted topics."""
