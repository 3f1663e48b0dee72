"""``urbangen export``: a generator folder -> a deployable folder (the generator + ``onnx/`` [+ ``tensorrt/``]).

Layout of ``OUT``::

    <the generator folder's files>     unchanged (the runtime reads urbangen.json, the scheduler and configs)
    onnx/denoise.onnx                  control branch + UNet + guidance (see urbangen.export.onnx)
    onnx/vae_decoder.onnx              latent-space generators only
    onnx/export.json                   opset, sha256 per file, parity with PyTorch, generator digest
    tensorrt/denoise.plan ...          --format tensorrt: engines for this GPU and TensorRT version
    tensorrt/export.json

Resumable: a step whose ``export.json`` names the same generator digest and whose files still match
their recorded sha256 is skipped. Upload ``OUT`` to the object store and point the InferenceService's
STORAGE_URI at it (docs/deploy.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from urbangen import __version__
from urbangen.errors import UrbangenError
from urbangen.io import sha256_file, write_json_atomic

FORMATS = ("onnx", "tensorrt")


def _complete(folder: Path, kind: str, digest: str) -> bool:
    """True if ``folder/kind/export.json`` is for ``digest`` and every file it lists is intact."""
    import json

    path = folder / kind / "export.json"
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    entries = record.get("graphs") or record.get("engines") or {}
    files = [(e["file"], e["sha256"]) for e in entries.values()]
    files += [(e["data_file"], e["data_sha256"]) for e in entries.values() if "data_file" in e]
    return record.get("generator_sha256") == digest and all(
        (folder / kind / name).is_file() and sha256_file(folder / kind / name) == sha for name, sha in files
    )


def copy_generator(source: Path, out: Path) -> None:
    """Copy the generator folder into ``out`` (kept beside ``onnx/`` so the bundle is self-contained)."""
    from urbangen.diffusion.artefacts import read_meta

    if out.resolve() == source.resolve():
        return
    source_digest = read_meta(source)["weights_sha256"]
    if (out / "urbangen.json").is_file() and read_meta(out)["weights_sha256"] == source_digest:
        return  # already copied (resumed run)
    parts = {p.name for p in source.iterdir()}
    foreign = [p.name for p in out.iterdir() if p.name not in parts | set(FORMATS) and not p.name.startswith(".")]
    if foreign or (out / "urbangen.json").is_file():
        raise UrbangenError(f"{out} holds another generator or other files ({foreign[:3]}): use another --out")
    tmp = out / ".generator.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(*FORMATS))
    # urbangen.json last: its presence marks a complete copy (parts left by an interrupted copy are replaced)
    for item in sorted(tmp.iterdir(), key=lambda p: p.name == "urbangen.json"):
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    tmp.rmdir()


def export_generator(
    generator_dir: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    precision: str = "fp16",
    max_batch: int = 8,
    static_batch: int | None = None,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Steps: 1. load the generator (float32, CPU, digest verified); 2. copy it to ``out``; 3. ONNX export
    with its parity check; 4. for ``fmt="tensorrt"``, engines from the ONNX graphs. Returns the records."""
    import torch

    from urbangen.diffusion.sampler import Generator
    from urbangen.export.onnx import TOLERANCE, export_onnx

    if fmt not in FORMATS:
        raise UrbangenError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    source, out = Path(generator_dir), Path(out)
    if fmt == "tensorrt":  # fail before the long ONNX step when TensorRT cannot run here
        from urbangen.export.tensorrt import import_tensorrt

        import_tensorrt()
        if not torch.cuda.is_available():
            raise UrbangenError("--format tensorrt needs a CUDA GPU (none is visible); export --format onnx here")
    generator = Generator.from_pretrained(source)  # 1.
    out.mkdir(parents=True, exist_ok=True)
    copy_generator(source, out)  # 2.
    records = {}
    common = {"generator_sha256": generator.digest, "urbangen_version": __version__}
    if not _complete(out, "onnx", generator.digest):  # 3.
        record = export_onnx(generator, out / "onnx", TOLERANCE if tolerance is None else tolerance)
        write_json_atomic(out / "onnx" / "export.json", {**record, **common})
    records["onnx"] = _read(out / "onnx" / "export.json")
    if fmt == "tensorrt" and not _complete(out, "tensorrt", generator.digest):  # 4.
        from urbangen.export.tensorrt import build_engines

        record = build_engines(
            out,
            records["onnx"],
            generator.resolution,
            generator.modules.factor,
            precision,
            max_batch,
            static_batch=static_batch,
        )
        write_json_atomic(out / "tensorrt" / "export.json", {**record, **common})
    if fmt == "tensorrt":
        records["tensorrt"] = _read(out / "tensorrt" / "export.json")
    return records


def _read(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())
