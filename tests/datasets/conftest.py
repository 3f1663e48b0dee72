"""Fixture builders for the dataset formats that have no real sample files here.

Each builder writes a tiny dataset that follows the format's documented layout and encoding exactly
(file names, folder depth, bit depth, palette or channel that carries the id), so the readers are tested
against what the real downloads contain. Real files in ../shared/realdata are used where they exist.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from urbangen.io import write_png


def encode_png16(array: np.ndarray) -> bytes:
    """A 16-bit RGB (HxWx3) or RGBA (HxWx4) PNG, as libpng writes SYNTHIA's labels.

    Rows cycle through all five PNG filter types (none, sub, up, average, Paeth), so a decoder is
    checked on each of them.
    """
    height, width, channels = array.shape
    bpp = 2 * channels
    raw = np.frombuffer(np.ascontiguousarray(array, dtype=">u2").tobytes(), np.uint8).reshape(height, -1)
    rows, prev = [], np.zeros(raw.shape[1], np.int32)
    for y in range(height):
        cur = raw[y].astype(np.int32)
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        kind = y % 5
        if kind == 4:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        else:
            predictor = [np.zeros_like(cur), left, prev, (left + prev) // 2][kind]
        rows.append(bytes([kind]) + ((cur - predictor) % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def cityscapes_ids(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blocky Cityscapes labelIds (0..33) so that labels have regions and boundaries."""
    from cityscapesscripts.helpers.labels import labels

    ids = np.array(sorted({lab.id for lab in labels if lab.id >= 0}), np.uint8)
    blocks = rng.choice(ids, size=(shape[0] // 4 + 1, shape[1] // 4 + 1))
    return np.kron(blocks, np.ones((4, 4), np.uint8))[: shape[0], : shape[1]]


def rgb(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def save_palette_label(path: Path, ids: np.ndarray) -> None:
    """A P-mode PNG whose palette indices are the ids and whose palette holds Cityscapes colours (GTA5)."""
    from cityscapesscripts.helpers.labels import id2label

    palette = np.zeros((256, 3), np.uint8)
    for i, lab in id2label.items():
        if i >= 0:
            palette[i] = lab.color
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def save_jpg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=90)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def acdc_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """fog/train (2 frames, one unpaired image), night/train (1), fog/val (1); Cityscapes labelIds."""
    root = tmp_path / "acdc"
    frames = [("fog", "train", "GOPR0475", 41), ("fog", "train", "GOPR0475", 42), ("night", "train", "GOPR0351", 1)]
    frames.append(("fog", "val", "GOPR0476", 7))
    for condition, split, seq, n in frames:
        name = f"{seq}_frame_{n:06d}"
        write_png(root / "rgb_anon" / condition / split / seq / f"{name}_rgb_anon.png", rgb(rng, (24, 32)))
        write_png(root / "gt" / condition / split / seq / f"{name}_gt_labelIds.png", cityscapes_ids(rng, (24, 32)))
    write_png(
        root / "rgb_anon" / "fog" / "train" / "GOPR0475" / "GOPR0475_frame_000099_rgb_anon.png", rgb(rng, (24, 32))
    )
    return root


@pytest.fixture
def gta5_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Frames 00001..00004 (P-mode labels) and the official split.mat layout (1-based frame numbers)."""
    from scipy.io import savemat

    root = tmp_path / "gta5"
    for n in range(1, 5):
        write_png(root / "images" / f"{n:05d}.png", rgb(rng, (20, 36)))
        save_palette_label(root / "labels" / f"{n:05d}.png", cityscapes_ids(rng, (20, 36)))
    savemat(root / "split.mat", {"trainIds": np.array([[1], [2], [4]]), "valIds": np.array([[3]]), "testIds": []})
    return root


@pytest.fixture
def synthia_ids_array(rng: np.random.Generator) -> np.ndarray:
    """A 16-bit SYNTHIA label: class ids 0..22 in R, instance ids (beyond 8 bits) in G, zero in B."""
    label = np.zeros((20, 30, 3), np.uint16)
    label[..., 0] = np.kron(rng.integers(0, 23, (5, 6)), np.ones((4, 5), np.int64))
    label[..., 1] = rng.integers(0, 4000, (20, 30))
    return label


@pytest.fixture
def synthia_root(tmp_path: Path, rng: np.random.Generator, synthia_ids_array: np.ndarray) -> Path:
    root = tmp_path / "synthia"
    for n in range(2):
        write_png(root / "RGB" / f"{n:07d}.png", rgb(rng, (20, 30)))
        (root / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
        label = synthia_ids_array if n == 0 else synthia_ids_array[::-1].copy()
        (root / "GT" / "LABELS" / f"{n:07d}.png").write_bytes(encode_png16(label))
    return root


@pytest.fixture
def synscapes_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Frames 1, 2 and 10 (unpadded names) with class, instance, depth (.npy, metres) and meta json."""
    root = tmp_path / "synscapes"
    for n in (10, 2, 1):
        write_png(root / "img" / "rgb" / f"{n}.png", rgb(rng, (16, 32)))
        write_png(root / "img" / "class" / f"{n}.png", cityscapes_ids(rng, (16, 32)))
        write_png(root / "img" / "instance" / f"{n}.png", rng.integers(0, 3000, (16, 32)).astype(np.uint16))
        (root / "img" / "depth").mkdir(parents=True, exist_ok=True)
        np.save(root / "img" / "depth" / f"{n}.npy", rng.uniform(1, 80, (16, 32)).astype(np.float32))
        (root / "meta").mkdir(parents=True, exist_ok=True)
        (root / "meta" / f"{n}.json").write_text(json.dumps({"camera": {"intrinsic": {"fx": 1590.83}}}))
    return root


@pytest.fixture
def folder_root(tmp_path: Path, rng: np.random.Generator) -> Path:
    """UrbanSyn-like naming (rgb_<id>.png / ss_<id>.png) with a mapping YAML of its own ids."""
    root = tmp_path / "own"
    for n in (1, 2):
        write_png(root / "images" / f"rgb_{n:04d}.png", rgb(rng, (12, 16)))
        write_png(root / "labels" / f"ss_{n:04d}.png", rng.integers(0, 4, (12, 16)).astype(np.uint8))
    (root / "mapping.yaml").write_text(
        "source_name: urbansyn-test\n"
        "ids: {0: road, 1: car, 2: ignore, 3: sky}\n"
        "missing: [train]\n"
        'image_name: "rgb_{id}.png"\n'
        'label_name: "ss_{id}.png"\n'
    )
    return root


@pytest.fixture
def bdd_root(tmp_path: Path, realdata: Path, rng: np.random.Generator) -> Path:
    """The real BDD100K sem_seg masks in the official layout: val (2 masks, no images), train (a mask with a
    synthetic 1280x720 jpg, plus one unpaired jpg), test (one jpg, no masks)."""
    masks = realdata / "bdd100k" / "toolkit_tests" / "label" / "testcases"
    root = tmp_path / "bdd100k"
    out = root / "labels" / "sem_seg" / "masks" / "val"
    out.mkdir(parents=True)
    (out / "b1c66a42-6f7d68ca.png").write_bytes((masks / "semseg_mask.png").read_bytes())
    (out / "b1c81faa-3df17267.png").write_bytes((masks / "to_rle" / "sem_seg" / "masks" / "0.png").read_bytes())
    save_jpg(root / "images" / "10k" / "test" / "cabc30fc-e7726578.jpg", rgb(rng, (720, 1280)))
    train = root / "labels" / "sem_seg" / "masks" / "train"
    train.mkdir(parents=True)
    (train / "0a0a0b1a-7c39d841.png").write_bytes((masks / "semseg_mask.png").read_bytes())
    save_jpg(root / "images" / "10k" / "train" / "0a0a0b1a-7c39d841.jpg", rgb(rng, (720, 1280)))
    save_jpg(root / "images" / "10k" / "train" / "0a0a0b1a-unpaired.jpg", rgb(rng, (720, 1280)))
    return root


@pytest.fixture
def png16():
    """:func:`encode_png16`, for tests that write their own 16-bit colour PNGs."""
    return encode_png16


@pytest.fixture
def palette_label():
    """:func:`save_palette_label`, for tests that write their own P-mode labels."""
    return save_palette_label
