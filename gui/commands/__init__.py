"""One module per CLI command: each has `add_parser` and an async `run` returning an exit code."""
