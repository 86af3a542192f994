"""What every view shares: the engine bridge, the QThreadPool executor, loop-lag monitor,
theme, base table model, plot helpers, form fields, file dialogs and time formats.
"""
