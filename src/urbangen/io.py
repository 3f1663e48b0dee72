"""Small, strict file helpers shared by every module: atomic writes, validated PNG reads, digests.

Every write goes to a temporary file in the destination folder and is renamed into place, so a crash
never leaves a half-written file behind; every read checks what it got and names the file when it is
not what was expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from urbangen.errors import UrbangenError

IGNORE = 255


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, sort_keys: bool = True) -> None:
    """``obj`` as indented JSON, keys sorted unless ``sort_keys`` is false (where their order is meant)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 (HxW or HxWx3) or uint16 (HxW) array as PNG, atomically and deterministically."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16 and array.ndim == 2:
        image = Image.fromarray(array)  # mode I;16
    elif array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        image = Image.fromarray(array)
    else:
        raise UrbangenError(
            f"cannot write {path}: expected uint8 HxW/HxWx3 or uint16 HxW, got {array.dtype} {array.shape}"
        )
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise UrbangenError(f"missing file: {path}")
    try:
        image = Image.open(path)
        image.load()
    except Exception as exc:  # PIL raises many types for corrupt or truncated files
        raise UrbangenError(f"cannot read image {path}: corrupt or truncated ({exc})") from exc
    return image


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB."""
    image = _open(Path(path))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_label(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single-channel label PNG (8-bit L/P or 16-bit I) as an integer HxW array, values untouched."""
    path = Path(path)
    image = _open(path)
    if image.mode in ("L", "P"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image)
        return array.astype(np.int32) if array.dtype != np.int32 else array
    raise UrbangenError(f"label {path}: expected a single-channel PNG (L, P or 16-bit), got mode {image.mode}")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) from the file header only, without decoding pixels."""
    path = Path(path)
    if not path.is_file():
        raise UrbangenError(f"missing file: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as exc:
        raise UrbangenError(f"cannot read image {path}: {exc}") from exc
    return height, width


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: object, label_path: object) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise UrbangenError(
            f"label {label_path} is {label.shape[0]}x{label.shape[1]} (HxW) but its image {image_path} is "
            f"{image.shape[0]}x{image.shape[1]}: image and label must have the same size"
        )


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
