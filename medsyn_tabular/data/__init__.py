"""Tables in: reading files, column kinds (schema), PHI and Safe Harbor, the privacy unit, sampling
conditions, bundled tables and the cached review of a table."""
