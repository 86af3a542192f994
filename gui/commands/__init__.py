"""One module per CLI command; each exposes `add_parser` and an async `run` returning an exit code."""
