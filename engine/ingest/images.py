"""Image files for image models: decoded, grey-scaled, resized and scaled as the manifest says."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.models.manifest import ImagePreprocessing


class ImageError(ValueError):
    """The file is not an image Pillow can decode."""


def image_pixels(path: Path, pre: ImagePreprocessing) -> list[float]:
    """Row-major pixels in 0..scale, ink high: light-background images are inverted."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                grey = img.convert("L").resize((pre.size[1], pre.size[0]), Image.Resampling.LANCZOS)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
        OSError,
        ValueError,
    ) as exc:
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    pixels = np.asarray(grey, dtype=np.float32) / 255.0
    invert = pre.invert == "always" or (pre.invert == "auto" and float(pixels.mean()) > 0.5)
    if invert:
        pixels = 1.0 - pixels
    scaled: list[float] = np.round(pixels * pre.scale, 2).reshape(-1).tolist()
    return scaled
