"""Read every channel of a colour PNG at full depth, including 16-bit RGB and RGBA.

Pillow opens a 16-bit colour PNG as 8-bit RGB(A) and keeps only the high byte of each sample, so a
SYNTHIA label holding class 3 in a 16-bit channel silently reads as 0. Pillow's own zlib decoder still
undoes the PNG row filters correctly (they depend only on the 6 or 8 bytes per pixel), so we decode the
file twice through it, once keeping the high bytes ("RGB;16B") and once the low bytes ("RGB;16L" reads
the second byte of each big-endian sample), and join the two halves into uint16.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from urbangen.errors import UrbangenError

_SIXTEEN_BIT = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _decode(path: Path, rawmode: str | None = None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise UrbangenError(f"{path}: expected a PNG file, got {image.format}")
            if rawmode is not None:
                image.tile = [image.tile[0]._replace(args=rawmode)]
            image.load()
            return np.asarray(image)
    except UrbangenError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt or truncated files
        raise UrbangenError(f"cannot read image {path}: corrupt or truncated ({exc})") from exc


def read_png_channels(path: str | os.PathLike[str]) -> np.ndarray:
    """All samples of a PNG as HxWxC (C = 1, 3 or 4): uint16 for 16-bit colour files, else as stored."""
    path = Path(path)
    if not path.is_file():
        raise UrbangenError(f"missing file: {path}")
    try:
        with Image.open(path) as image:
            tiles = list(image.tile)
    except Exception as exc:
        raise UrbangenError(f"cannot read image {path}: corrupt or truncated ({exc})") from exc
    rawmode = tiles[0].args if len(tiles) == 1 else None
    if rawmode in _SIXTEEN_BIT:
        high = _decode(path).astype(np.uint16)
        low = _decode(path, _SIXTEEN_BIT[rawmode]).astype(np.uint16)
        return (high << 8) | low
    if not isinstance(rawmode, str):
        raise UrbangenError(f"{path}: unsupported PNG layout (tiles {tiles}); re-save it without interlacing")
    array = _decode(path)
    return array[..., None] if array.ndim == 2 else array
