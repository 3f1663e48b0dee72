"""Versioned dataset store: a local directory (embedded default) or MinIO/S3, behind one interface.

Layout, identical in a bucket and in a local root::

    <bucket-or-root>/datasets/<name>/<version>/<every file of the dataset folder, same relative paths>
    <bucket-or-root>/datasets/<name>/<version>/_files.jsonl    one line per file: path, sha256, size

``_files.jsonl`` is written last, so its presence is what marks a version complete; a complete version
is immutable (a second push is refused). A dataset's own ``manifest.jsonl`` (written by
:class:`urbangen.datasets.writer.DatasetWriter`) is just another file here. Transfers are parallel,
resumable (files already present with the right checksum are skipped) and verified: a pull checks every
file's sha256 while streaming it to a temporary file and refuses a mismatch, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from urbangen.config import Settings
from urbangen.errors import UrbangenError
from urbangen.io import atomic_path, sha256_file, write_bytes_atomic

PREFIX = "datasets"
FILES = "_files.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset version: path relative to the version folder (POSIX), sha256, size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    files: int
    bytes: int
    complete: bool


@dataclass(frozen=True)
class TransferStats:
    files: int
    transferred: int
    skipped: int
    bytes: int


class Progress(Protocol):
    """What push/pull report progress to: a ``tqdm`` bar fits (``total`` in bytes, ``update(bytes)``)."""

    total: float | None

    def update(self, n: float) -> Any: ...


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value or ""):
        raise UrbangenError(
            f"invalid dataset {what} {value!r}: use letters, digits, '.', '_' or '-' (starting with a letter "
            "or digit, at most 128 characters)"
        )
    return value


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")  # left by an interrupted urbangen.io atomic write


def scan_dir(root: str | os.PathLike[str], workers: int = 8) -> list[FileEntry]:
    """Every file under ``root`` with its sha256 and size, sorted by path (hashing runs in parallel)."""
    root = Path(root)
    if not root.is_dir():
        raise UrbangenError(f"dataset folder not found: {root}")
    paths = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        paths += [Path(folder, name) for name in sorted(names) if not _is_temp(name)]
    if (root / FILES) in paths:
        raise UrbangenError(f"{root / FILES}: this file name is reserved by the dataset store; rename it")
    if not paths:
        raise UrbangenError(f"dataset folder {root} contains no files")

    def entry(path: Path) -> FileEntry:
        return FileEntry(path.relative_to(root).as_posix(), sha256_file(path), path.stat().st_size)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sorted(pool.map(entry, paths), key=lambda item: item.path)


def encode_files(entries: Iterable[FileEntry]) -> bytes:
    """Canonical bytes of a file manifest (sorted, one JSON object per line): equal content, equal bytes."""
    lines = [json.dumps(asdict(e), sort_keys=True) for e in sorted(entries, key=lambda item: item.path)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def decode_files(data: bytes, source: str) -> list[FileEntry]:
    entries = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        try:
            entry = FileEntry(**json.loads(line))
        except (json.JSONDecodeError, TypeError) as exc:
            raise UrbangenError(f"{source}: line {number} is not a file record ({exc})") from None
        parts = PurePosixPath(entry.path).parts
        if not parts or entry.path.startswith("/") or ".." in parts:
            raise UrbangenError(f"{source}: line {number}: unsafe path {entry.path!r}")
        entries.append(entry)
    return entries


def digest_of(entries: Iterable[FileEntry]) -> str:
    """Content digest of a dataset: sha256 of its canonical file manifest (same for a folder and a version)."""
    return hashlib.sha256(encode_files(entries)).hexdigest()


def _parallel(fn: Callable[[T], bool], items: list[T], workers: int, done: Callable[[T, bool], None]) -> None:
    """Run ``fn`` over ``items`` in threads; stop scheduling on the first failure (or an interrupt) and
    raise it once the running calls have finished. ``done`` runs in the calling thread."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fn, item): item for item in items}
        try:
            for future in as_completed(futures):
                done(futures[future], future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class Store:
    """Push, pull and list dataset versions. Subclasses implement a handful of object primitives."""

    location: str

    # ---- object primitives (keys are POSIX paths below the bucket or root) ----
    def _stat(self, key: str) -> tuple[int, str | None] | None:
        """(size, sha256 or None when unknown) of an object, None when absent."""
        raise NotImplementedError

    def _get_bytes(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _put_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _put_file(self, key: str, path: Path, sha256: str) -> None:
        raise NotImplementedError

    def _read_chunks(self, key: str) -> Iterator[bytes]:
        raise NotImplementedError

    def _iter_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    # ---- public interface ----
    def _prefix(self, name: str, version: str) -> str:
        return f"{PREFIX}/{check_name(name, 'name')}/{check_name(version, 'version')}/"

    def uri(self, name: str, version: str) -> str:
        """Where a version lives, for messages and lineage (``s3://bucket/...`` or a local path)."""
        return f"{self.location}/{self._prefix(name, version)}"

    def exists(self, name: str, version: str) -> bool:
        """True when the version is complete (its file manifest was written)."""
        return self._stat(self._prefix(name, version) + FILES) is not None

    def files(self, name: str, version: str) -> list[FileEntry]:
        """The file manifest of a complete version; a clear error when it is missing or incomplete."""
        prefix = self._prefix(name, version)
        data = self._get_bytes(prefix + FILES)
        if data is not None:
            return decode_files(data, self.uri(name, version) + FILES)
        if next(self._iter_objects(prefix), None) is not None:
            raise UrbangenError(
                f"dataset {name} version {version} in {self.location} is incomplete (an interrupted "
                "push): rerun the push to resume it"
            )
        known = sorted(v.version for v in self.list() if v.name == name)
        hint = f"; versions of {name}: {', '.join(known)}" if known else ""
        raise UrbangenError(f"dataset {name} version {version} not found in {self.location}{hint}")

    def digest(self, name: str, version: str) -> str:
        return digest_of(self.files(name, version))

    def push(
        self,
        local_dir: str | os.PathLike[str],
        name: str,
        version: str,
        workers: int = 8,
        progress: Progress | None = None,
    ) -> TransferStats:
        """Upload a dataset folder as ``name``/``version``; rerun after an interruption to resume."""
        prefix = self._prefix(name, version)
        if self.exists(name, version):
            raise UrbangenError(
                f"dataset {name} version {version} already exists in {self.location}: versions are "
                "immutable, push under a new --version"
            )
        root = Path(local_dir)
        entries = scan_dir(root, workers)
        stats = _Counter(progress, entries)

        def upload(entry: FileEntry) -> bool:
            key = prefix + entry.path
            if self._stat(key) == (entry.size, entry.sha256):
                return False
            self._put_file(key, root / entry.path, entry.sha256)
            return True

        _parallel(upload, entries, workers, stats.done)
        wanted = {prefix + entry.path for entry in entries}
        for key, _ in list(self._iter_objects(prefix)):  # leftovers of an interrupted push of other content
            if key not in wanted:
                self._delete(key)
        if self.exists(name, version):
            raise UrbangenError(f"dataset {name} version {version} was completed by another push meanwhile")
        self._put_bytes(prefix + FILES, encode_files(entries))  # last: marks the version complete
        return stats.result()

    def pull(
        self,
        name: str,
        version: str,
        out_dir: str | os.PathLike[str],
        workers: int = 8,
        progress: Progress | None = None,
    ) -> TransferStats:
        """Download a complete version into ``out_dir``, verifying every file; rerun to resume."""
        prefix, out = self._prefix(name, version), Path(out_dir)
        entries = self.files(name, version)
        stats = _Counter(progress, entries)

        def fetch(entry: FileEntry) -> bool:
            dest = out / entry.path
            if dest.is_file() and dest.stat().st_size == entry.size and sha256_file(dest) == entry.sha256:
                return False
            digest, size = hashlib.sha256(), 0
            with atomic_path(dest) as tmp:
                with open(tmp, "wb") as handle:
                    for chunk in self._read_chunks(prefix + entry.path):
                        handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                if digest.hexdigest() != entry.sha256:
                    raise UrbangenError(
                        f"checksum mismatch for {entry.path} in dataset {name} version {version} "
                        f"({self.location}): expected sha256 {entry.sha256} ({entry.size} bytes), got "
                        f"{digest.hexdigest()} ({size} bytes); refused: the stored copy is corrupt or was modified"
                    )
            return True

        _parallel(fetch, entries, workers, stats.done)
        return stats.result()

    def list(self) -> list[VersionInfo]:
        """Every dataset version in the store with its file count, size and completeness."""
        found: dict[tuple[str, str], list[int]] = {}
        for key, size in self._iter_objects(PREFIX + "/"):
            parts = key.split("/", 3)
            if len(parts) < 4:
                continue
            row = found.setdefault((parts[1], parts[2]), [0, 0, 0])
            if parts[3] == FILES:
                row[2] = 1
            else:
                row[0], row[1] = row[0] + 1, row[1] + size
        return [VersionInfo(n, v, row[0], row[1], bool(row[2])) for (n, v), row in sorted(found.items())]


class _Counter:
    """Counts transferred/skipped files and forwards bytes to a progress bar."""

    def __init__(self, progress: Progress | None, entries: list[FileEntry]) -> None:
        self.progress, self.files, self.bytes = progress, len(entries), sum(e.size for e in entries)
        self.transferred = self.skipped = 0
        if progress is not None:
            progress.total = self.bytes

    def done(self, entry: FileEntry, transferred: bool) -> None:
        if transferred:
            self.transferred += 1
        else:
            self.skipped += 1
        if self.progress is not None:
            self.progress.update(entry.size)

    def result(self) -> TransferStats:
        return TransferStats(self.files, self.transferred, self.skipped, self.bytes)


class LocalStore(Store):
    """Dataset store in a local directory with the bucket's layout (``<root>/datasets/<name>/<version>``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _stat(self, key: str) -> tuple[int, str | None] | None:
        path = self._path(key)
        return (path.stat().st_size, sha256_file(path)) if path.is_file() else None

    def _get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def _put_bytes(self, key: str, data: bytes) -> None:
        write_bytes_atomic(self._path(key), data)

    def _put_file(self, key: str, path: Path, sha256: str) -> None:
        with atomic_path(self._path(key)) as tmp:
            shutil.copyfile(path, tmp)

    def _read_chunks(self, key: str) -> Iterator[bytes]:
        with open(self._path(key), "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    def _iter_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for folder, dirs, names in os.walk(base):
            dirs.sort()
            for name in sorted(names):
                if not _is_temp(name):
                    path = Path(folder, name)
                    yield path.relative_to(self.root).as_posix(), path.stat().st_size

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def open_store(settings: Settings | None = None) -> Store:
    """MinIO when ``URBANGEN_S3_ENDPOINT`` is set (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY),
    else a local store in ``<URBANGEN_WORKSPACE>/store``."""
    settings = settings or Settings()
    if not settings.urbangen_s3_endpoint:
        return LocalStore(settings.urbangen_workspace / "store")
    if not (settings.aws_access_key_id and settings.aws_secret_access_key):
        raise UrbangenError(
            "URBANGEN_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not: "
            "set both (on the cluster they come from a Kubernetes Secret)"
        )
    from urbangen.storage_s3 import MinioStore

    return MinioStore(
        settings.urbangen_s3_endpoint,
        settings.urbangen_s3_bucket,
        settings.aws_access_key_id,
        settings.aws_secret_access_key,
        secure=settings.urbangen_s3_secure,
    )
