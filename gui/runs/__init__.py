"""Runs: the table of past runs (model, view, text report) and the Compare window."""
