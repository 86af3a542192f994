"""Predictions from the app: the form, file drops and their runner, and remote predictions."""
