"""Reading the inputs: tables (CSV, TSV, Parquet, JSON lines, gzip), events and catalog validation, and the interactions matrix."""
