"""The command line: the `inferdeck` launcher (`main`) and one module per command.

Qt-free by construction (import-linter): every command but `gui` runs on an install without the
desktop group, and the launcher imports only the command it runs.
"""
