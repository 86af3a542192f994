"""File-name suffixes by what the file holds, kept apart from the readers: deciding a file's
format must not import an image library (numpy, Pillow) that only image files need."""

from __future__ import annotations

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
