"""The Qt shell and the command line: the composition root that wires engine and storage."""
