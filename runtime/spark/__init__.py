"""The same stages on Spark: session and table helpers, embed, profile and segment."""
