"""`urbangen serve` as a real HTTP server on 127.0.0.1 with a tiny generator: V2 and V1, good and bad."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("kserve")

NAME = "tiny-generator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def server(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "urbangen.cli",
        "serve",
        "--generator",
        str(tiny_bundle),
        "--name",
        NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend",
        "onnxruntime",
        "--max-batch",
        "4",
        "--max-wait-ms",
        "500",
        "--max-side",
        "256",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path_factory.mktemp("serve") / "server.log"  # a file, not a pipe: a full pipe would block it
    with log.open("w") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if request(f"{base}/v2/models/{NAME}/ready", timeout=5)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("server not ready within 180 s")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 19, (24, 40)).astype(np.uint8)
    label[:4] = 255
    return label, np.full((24, 40), 15.0, np.float32)


def v2_body(label: np.ndarray, depth: np.ndarray, **params) -> dict:
    return {
        "inputs": [
            {"name": "label", "datatype": "UINT8", "shape": list(label.shape), "data": label.ravel().tolist()},
            {"name": "depth", "datatype": "FP32", "shape": list(depth.shape), "data": depth.ravel().tolist()},
        ],
        "parameters": params,
    }


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_v2_generates_the_seeded_image(server: str, tiny_bundle: Path):
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    label, depth = inputs()
    status, body = request(f"{server}/v2/models/{NAME}/infer", v2_body(label, depth, seed=7, steps=2))
    assert status == 200, body
    response = json.loads(body)
    (output,) = response["outputs"]
    assert output["name"] == "image" and output["datatype"] == "UINT8" and output["shape"] == [24, 40, 3]
    # the server's default --calibrate auto: the richest mode the generator has statistics for
    assert response["parameters"] == {"seed": 7, "steps": 2, "guidance": 2.0, "calibrate": "exemplar"}
    image = np.asarray(output["data"], dtype=np.uint8).reshape(24, 40, 3)
    expected = load_runtime(tiny_bundle, RuntimeConfig(backend="onnxruntime")).generate(
        label[None], [7], depth=depth[None], steps=2, calibrate="exemplar"
    )[0]
    assert np.array_equal(image, expected)  # the service renders exactly what the runtime renders


def test_v2_calibrates_colours_like_generate(server: str, tiny_bundle: Path):
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    label, depth = inputs()
    runtime = load_runtime(tiny_bundle, RuntimeConfig(backend="onnxruntime"))
    images = {}
    for mode in ("none", "pooled", "exemplar"):
        status, body = request(
            f"{server}/v2/models/{NAME}/infer", v2_body(label, depth, seed=7, steps=2, calibrate=mode)
        )
        assert status == 200, body
        response = json.loads(body)
        assert response["parameters"]["calibrate"] == mode
        images[mode] = np.asarray(response["outputs"][0]["data"], dtype=np.uint8).reshape(24, 40, 3)
        expected = runtime.generate(label[None], [7], depth=depth[None], steps=2, calibrate=mode)[0]
        assert np.array_equal(images[mode], expected)  # the pipeline's generate.calibrate, served
    assert not np.array_equal(images["none"], images["pooled"])
    assert not np.array_equal(images["pooled"], images["exemplar"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["inputs"][0]["data"].__setitem__(0, 77), "are not trainIds"),
        (lambda b: b["inputs"][0].__setitem__("datatype", "INT32"), "datatype must be UINT8"),
        (lambda b: b["inputs"][0].__setitem__("shape", [24, 41]), "do not fill shape"),
        (lambda b: b["inputs"].pop(1), "needs a depth map"),
        (lambda b: b["parameters"].__setitem__("steps", 5000), "steps"),
    ],
)
def test_v2_malformed_requests_get_400(server: str, change, message: str):
    body = v2_body(*inputs(), seed=1, steps=2)
    change(body)
    status, answer = request(f"{server}/v2/models/{NAME}/infer", body)
    assert status == 400, answer
    assert message in json.loads(answer)["error"]


def test_v1_png_in_png_out(server: str):
    label, depth = inputs()
    png, npy = io.BytesIO(), io.BytesIO()
    Image.fromarray(label).save(png, format="PNG")
    np.save(npy, depth)
    instance = {"label": b64(png.getvalue()), "depth": b64(npy.getvalue()), "seed": 7, "steps": 2}
    status, body = request(f"{server}/v1/models/{NAME}:predict", {"instances": [instance]})
    assert status == 200, body
    (prediction,) = json.loads(body)["predictions"]
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["image"]["b64"]))))
    assert image.shape == (24, 40, 3) and prediction["seed"] == 7
    _, v2_answer = request(f"{server}/v2/models/{NAME}/infer", v2_body(label, depth, seed=7, steps=2))
    assert np.array_equal(image.ravel(), np.asarray(json.loads(v2_answer)["outputs"][0]["data"], np.uint8))
    big = io.BytesIO()
    Image.fromarray(np.zeros((300, 40), np.uint8)).save(big, format="PNG")
    for bad, message in [
        ({"instances": [{**instance, "label": {"b64": "???"}}]}, "not valid base64"),
        ({"instances": [{**instance, "label": b64(big.getvalue())}]}, "too large"),
        ({"instances": "nope"}, "instances"),
    ]:
        status, answer = request(f"{server}/v1/models/{NAME}:predict", bad)
        assert status == 400 and message in answer.decode(), answer


def test_concurrent_requests_are_batched_and_counted(server: str):
    label, depth = inputs(1)

    def call(seed: int) -> int:
        return request(f"{server}/v2/models/{NAME}/infer", v2_body(label, depth, seed=seed, steps=2))[0]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert list(pool.map(call, [21, 22, 23])) == [200, 200, 200]
    status, metrics = request(f"{server}/metrics")
    assert status == 200
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.decode().splitlines()
        if line.startswith("urbangen_") and f'model="{NAME}"' in line and "protocol" not in line
    }
    label_set = f'{{model="{NAME}"}}'
    assert samples[f"urbangen_images_generated_total{label_set}"] >= 3
    # at least one generate call rendered several requests together
    assert samples[f"urbangen_batch_size_sum{label_set}"] > samples[f"urbangen_batch_size_count{label_set}"]
    assert "request_predict_seconds" in metrics.decode() or "request_" in metrics.decode()


def test_model_is_ready_only_after_load(tiny_bundle: Path, tmp_path: Path):
    from prometheus_client import CollectorRegistry

    from urbangen.errors import UrbangenError
    from urbangen.export.runtime import RuntimeConfig
    from urbangen.export.server import GeneratorModel, ServeOptions
    from urbangen.export.synthetic import random_generator

    (tmp_path / "empty").mkdir()
    options = ServeOptions(name="m", generator=tiny_bundle, runtime=RuntimeConfig(backend="onnxruntime"))
    model = GeneratorModel(options, registry=CollectorRegistry())
    assert model.ready is False
    assert model.load() is True and model.ready is True and model.limits.depth is True
    assert model.limits.calibrations == ("none", "pooled", "exemplar")
    assert model.limits.default_calibrate == "exemplar"  # auto: the richest the generator has statistics for
    plain = random_generator(tmp_path / "plain", patch=2, appearance=False)
    auto = GeneratorModel(ServeOptions(name="m", generator=plain), registry=CollectorRegistry())
    assert auto.load() and auto.limits.default_calibrate == "none"  # a generator without statistics still serves
    refused = GeneratorModel(
        ServeOptions(name="m", generator=plain, calibrate="exemplar"), registry=CollectorRegistry()
    )
    with pytest.raises(UrbangenError, match=r"--calibrate exemplar: .* can apply \['none'\] only"):
        refused.load()
    broken = GeneratorModel(ServeOptions(name="m", generator=tmp_path / "empty"), registry=CollectorRegistry())
    with pytest.raises(UrbangenError, match="not a generator folder"):
        broken.load()
    assert broken.ready is False
