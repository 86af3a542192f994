"""Load from the app: the Load panel, the host that runs a `LoadRunner` for it, and its plots."""
