"""The ``medsyn`` command line: one module per command group (``main`` builds the parser)."""
