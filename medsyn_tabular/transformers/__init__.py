"""Reversible encodings of a table into the matrix the models learn from: ``table`` (statistics of the
rows) and ``private`` (declared metadata and DP releases only)."""
