"""The dataset store contract, run against a local directory and against a real S3 server (moto's) on
127.0.0.1: push/pull round trip, resume, checksum refusal, immutability, listing, and fast failures."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.config import Settings
from urbangen.datasets.writer import DatasetWriter
from urbangen.errors import UrbangenError
from urbangen.storage import FILES, LocalStore, Store, decode_files, digest_of, open_store, scan_dir


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-protocol server (moto) on a free loopback port, for the whole module."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def make_minio(endpoint: str, **kwargs) -> Store:
    from urbangen.storage_s3 import MinioStore

    return MinioStore(endpoint, f"t-{uuid.uuid4().hex[:12]}", "testing", "testing", **kwargs)


@pytest.fixture(params=["local", "minio"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return make_minio(request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A generated-dataset folder (DatasetWriter layout, with its own manifest.jsonl) plus a nested extra."""
    root = tmp_path / "gen"
    writer = DatasetWriter(root)
    rng = np.random.default_rng(0)
    for i in range(6):
        image = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        label = rng.integers(0, 19, (16, 32), dtype=np.uint8)
        writer.write(f"generated_{i:06d}_000019", image, label, {"source": "test", "seed": i})
    (root / "meta" / "deep").mkdir(parents=True)
    (root / "meta" / "deep" / "notes.txt").write_text("lineage notes\n")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Interrupt:
    """A progress bar that raises after ``after`` finished files, like Ctrl-C in the middle of a transfer."""

    def __init__(self, after: int) -> None:
        self.after, self.total = after, None

    def update(self, n: float) -> None:
        self.after -= 1
        if self.after <= 0:
            raise KeyboardInterrupt


def test_push_pull_round_trip(store, dataset, tmp_path):
    stats = store.push(dataset, "gen", "v1", workers=4)
    assert (stats.files, stats.transferred, stats.skipped) == (14, 14, 0)  # 6x(image+label)+manifest+notes
    assert store.exists("gen", "v1") and not store.exists("gen", "v2")
    [info] = store.list()
    assert (info.name, info.version, info.files, info.complete) == ("gen", "v1", 14, True)
    assert info.bytes == sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())

    out = tmp_path / "pulled"
    stats = store.pull("gen", "v1", out, workers=4)
    assert stats.transferred == 14
    assert tree(out) == tree(dataset)  # the writer's manifest.jsonl travels as a regular file
    assert not (out / FILES).exists()
    assert store.digest("gen", "v1") == digest_of(scan_dir(out)) == digest_of(scan_dir(dataset))


def test_pull_resumes_and_repairs_local_files(store, dataset, tmp_path):
    store.push(dataset, "gen", "v1")
    out = tmp_path / "pulled"
    store.pull("gen", "v1", out)
    (out / "meta" / "deep" / "notes.txt").unlink()
    (out / "manifest.jsonl").write_text("edited\n")
    stats = store.pull("gen", "v1", out)
    assert (stats.transferred, stats.skipped) == (2, 12)
    assert tree(out) == tree(dataset)


def test_push_resumes_after_interruption(store, dataset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        store.push(dataset, "gen", "v1", workers=2, progress=Interrupt(after=5))
    assert not store.exists("gen", "v1")
    assert [(v.version, v.complete) for v in store.list()] == [("v1", False)]
    with pytest.raises(UrbangenError, match="incomplete"):
        store.pull("gen", "v1", tmp_path / "early")

    prefix = "datasets/gen/v1/"
    present = sorted(key for key, _ in store._iter_objects(prefix))
    assert 5 <= len(present) < 14
    size = store._stat(present[0])[0]
    store._put_bytes(present[0], b"x" * size)  # damaged, same size: only the checksum tells, so re-upload
    store._put_bytes(prefix + "stale/left-over.bin", b"from an earlier attempt")  # must be dropped

    stats = store.push(dataset, "gen", "v1", workers=2)
    assert stats.skipped == len(present) - 1
    assert stats.transferred == 14 - stats.skipped
    assert store.list()[0].files == 14
    store.pull("gen", "v1", tmp_path / "pulled")
    assert tree(tmp_path / "pulled") == tree(dataset)


def test_pull_refuses_checksum_mismatch_and_names_the_file(store, dataset, tmp_path):
    store.push(dataset, "gen", "v1")
    victim = "meta/deep/notes.txt"
    store._put_bytes(f"datasets/gen/v1/{victim}", b"tampered\n")
    out = tmp_path / "pulled"
    with pytest.raises(UrbangenError, match=r"checksum mismatch for meta/deep/notes\.txt.*refused"):
        store.pull("gen", "v1", out, workers=1)
    assert not (out / victim).exists()
    assert not list(out.rglob("*.tmp"))  # no partial files left behind


def test_existing_version_is_immutable(store, dataset):
    store.push(dataset, "gen", "v1")
    (dataset / "extra.txt").write_text("new file")
    with pytest.raises(UrbangenError, match=r"already exists.*immutable"):
        store.push(dataset, "gen", "v1")
    store.push(dataset, "gen", "v2")
    assert [(v.version, v.files) for v in store.list()] == [("v1", 14), ("v2", 15)]


def test_missing_version_and_bad_input(store, dataset, tmp_path):
    store.push(dataset, "gen", "v1")
    with pytest.raises(UrbangenError, match=r"version v9 not found.*versions of gen: v1"):
        store.pull("gen", "v9", tmp_path / "out")
    with pytest.raises(UrbangenError, match="invalid dataset name"):
        store.push(dataset, "../evil", "v1")
    with pytest.raises(UrbangenError, match="dataset folder not found"):
        store.push(tmp_path / "nope", "gen", "v3")
    (dataset / FILES).write_text("x")
    with pytest.raises(UrbangenError, match="reserved"):
        store.push(dataset, "gen", "v3")


def test_many_small_files_in_parallel(s3_endpoint, tmp_path):
    root = tmp_path / "many"
    for i in range(300):
        path = root / f"shard_{i % 7}" / f"{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(2, "big") * (1 + i))
    store = make_minio(s3_endpoint)
    assert store.push(root, "many", "v1", workers=16).transferred == 300
    assert store.pull("many", "v1", tmp_path / "out", workers=16).transferred == 300
    assert tree(tmp_path / "out") == tree(root)


def test_unsafe_manifest_paths_are_refused():
    line = json.dumps({"path": "../../etc/passwd", "sha256": "0" * 64, "size": 1}).encode()
    with pytest.raises(UrbangenError, match="unsafe path"):
        decode_files(line, "s3://b/datasets/x/v1/_files.jsonl")


def test_unreachable_endpoint_fails_fast(free_port, silent_port):
    start = time.monotonic()
    with pytest.raises(UrbangenError, match=r"unreachable or not answering.*URBANGEN_S3_ENDPOINT"):
        make_minio(f"127.0.0.1:{free_port()}")  # nothing listens there
    assert time.monotonic() - start < 5

    start = time.monotonic()
    with pytest.raises(UrbangenError, match="not answering"):
        make_minio(f"127.0.0.1:{silent_port}", read_timeout=0.5, retries=1)  # accepts, never answers
    assert time.monotonic() - start < 5


def test_open_store_follows_the_environment(tmp_path, s3_endpoint):
    local = open_store(Settings(urbangen_workspace=tmp_path))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "store"
    with pytest.raises(UrbangenError, match="AWS_ACCESS_KEY_ID"):
        open_store(Settings(urbangen_s3_endpoint=s3_endpoint))
    remote = open_store(
        Settings(
            urbangen_s3_endpoint=f"http://{s3_endpoint}",
            urbangen_s3_bucket="envbucket",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
    )
    assert remote.location == "s3://envbucket"


@pytest.mark.parametrize("backend", ["local", "minio"])
def test_cli_push_ls_pull(backend, dataset, tmp_path, monkeypatch, request):
    monkeypatch.setenv("URBANGEN_WORKSPACE", str(tmp_path / "ws"))
    if backend == "minio":
        monkeypatch.setenv("URBANGEN_S3_ENDPOINT", request.getfixturevalue("s3_endpoint"))
        monkeypatch.setenv("URBANGEN_S3_BUCKET", f"cli-{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    runner = CliRunner()
    result = runner.invoke(main, ["data", "push", str(dataset), "--name", "gen", "--version", "v1"])
    assert result.exit_code == 0, result.output
    assert "uploaded 14 of 14 files" in result.output
    result = runner.invoke(main, ["data", "ls", "--json"])
    assert json.loads(result.output) == [
        {"name": "gen", "version": "v1", "files": 14, "bytes": json.loads(result.output)[0]["bytes"], "complete": True}
    ]
    assert "gen/v1" in runner.invoke(main, ["data", "ls"]).output
    result = runner.invoke(main, ["data", "pull", "gen", "v1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "out") == tree(dataset)
    result = runner.invoke(main, ["data", "push", str(dataset), "--name", "gen", "--version", "v1"])
    assert result.exit_code == 2 and "immutable" in result.output


def test_cli_reports_unreachable_endpoint(monkeypatch, free_port):
    monkeypatch.setenv("URBANGEN_S3_ENDPOINT", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    result = CliRunner().invoke(main, ["data", "ls"])
    assert result.exit_code == 2 and "unreachable" in result.output
