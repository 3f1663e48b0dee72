"""The service's request checks (V2 and V1) and its batching, without a model or a server."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("kserve")

from kserve import InferInput, InferRequest

from urbangen.export.protocol import (
    GenerationRequest,
    Limits,
    RequestError,
    encode_v1,
    encode_v2,
    parse_v1,
    parse_v2,
)

LIMITS = Limits(num_classes=19, depth=True, max_side=64, max_pixels=64 * 32, max_steps=50)


def v2(label=None, depth=None, params=None, label_type="UINT8", label_shape=None, extra=()):
    label = np.zeros((8, 16), np.uint8) if label is None else label
    inputs = [InferInput("label", label_shape or list(label.shape), label_type, label.ravel().tolist())]
    depth = np.ones(label.shape, np.float32) if depth is None else depth
    if depth is not False:
        inputs.append(InferInput("depth", list(depth.shape), "FP32", depth.ravel().tolist()))
    inputs += list(extra)
    return InferRequest("g", inputs, parameters=params)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return b64(buffer.getvalue())


def npy(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return b64(buffer.getvalue())


def test_v2_good_request_round_trip():
    label = np.arange(8 * 16).reshape(8, 16) % 19
    label[0, 0] = 255
    item = parse_v2(v2(label.astype(np.uint8), params={"seed": 5, "steps": 7, "guidance": 1.5}), LIMITS)
    assert item.label.dtype == np.uint8 and np.array_equal(item.label, label)
    assert item.depth.dtype == np.float32 and (item.seed, item.steps, item.guidance) == (5, 7, 1.5)
    defaults = parse_v2(v2(params=None), LIMITS)
    assert defaults.steps == LIMITS.default_steps and defaults.guidance is None and 0 <= defaults.seed < 2**31
    image = np.zeros((8, 16, 3), np.uint8)
    response, _ = encode_v2("g", "id-1", item, image, 1.5).to_rest()
    assert response["outputs"][0]["shape"] == [8, 16, 3] and response["outputs"][0]["datatype"] == "UINT8"
    assert response["parameters"]["seed"] == 5


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"label": np.full((8, 16), 19, np.uint8)}, r"ids \[19\] are not trainIds"),
        ({"label_type": "FP32"}, "datatype must be UINT8"),
        ({"label_shape": [8, 15]}, "do not fill shape"),
        ({"label_shape": [2, 8, 8]}, r"shape must be \[H, W\]"),
        ({"label": np.zeros((8, 128), np.uint8), "depth": np.ones((8, 128), np.float32)}, "too large"),
        ({"depth": False}, "needs a depth map"),
        ({"depth": np.ones((8, 15), np.float32)}, "differs from the label"),
        ({"depth": np.full((8, 16), np.nan, np.float32)}, "finite"),
        ({"params": {"steps": 0}}, "steps"),
        ({"params": {"steps": 2.5}}, "steps"),
        ({"params": {"seed": -1}}, "seed"),
        ({"params": {"guidance": 99}}, "guidance"),
        ({"params": {"strength": 1}}, r"unknown parameters \['strength'\]"),
        ({"extra": [InferInput("mask", [1], "UINT8", [1])]}, r"unknown inputs \['mask'\]"),
    ],
)
def test_v2_bad_requests_name_the_problem(request_kwargs, message):
    with pytest.raises(RequestError, match=message):
        parse_v2(v2(**request_kwargs), LIMITS)


def test_calibrate_parameter_defaults_to_the_server_and_is_checked_against_the_generator():
    limits = Limits(num_classes=19, depth=True, calibrations=("none", "pooled", "exemplar"), default_calibrate="pooled")
    assert parse_v2(v2(), limits).calibrate == "pooled"
    chosen = parse_v2(v2(params={"calibrate": "exemplar"}), limits)
    assert chosen.calibrate == "exemplar" and chosen.batch_key() != parse_v2(v2(), limits).batch_key()
    response, _ = encode_v2("g", "id", chosen, np.zeros((8, 16, 3), np.uint8), 2.0).to_rest()
    assert response["parameters"]["calibrate"] == "exemplar"
    instance = {"label": png(np.zeros((8, 16), np.uint8)), "depth": npy(np.ones((8, 16), np.float32))}
    (item,) = parse_v1({"instances": [{**instance, "calibrate": "none"}]}, limits)
    assert item.calibrate == "none"
    assert encode_v1([item], [np.zeros((8, 16, 3), np.uint8)])["predictions"][0]["calibrate"] == "none"
    with pytest.raises(RequestError, match=r"calibrate: expected one of \['none', 'pooled', 'exemplar'\], got 'warm'"):
        parse_v2(v2(params={"calibrate": "warm"}), limits)
    # a generator without colour statistics (LIMITS: the default, none only) refuses the modes that need them
    assert parse_v2(v2(), LIMITS).calibrate == "none"
    with pytest.raises(RequestError, match="no target colour statistics"):
        parse_v2(v2(params={"calibrate": "exemplar"}), LIMITS)


def test_v2_refuses_depth_for_a_generator_without_it():
    with pytest.raises(RequestError, match="does not use depth"):
        parse_v2(v2(), Limits(num_classes=19, depth=False))


def test_v1_round_trip_and_errors():
    label = (np.arange(8 * 16).reshape(8, 16) % 19).astype(np.uint8)
    depth = np.full((8, 16), 12.5, np.float32)
    items = parse_v1({"instances": [{"label": png(label), "depth": npy(depth), "seed": 3}] * 2}, LIMITS)
    assert len(items) == 2 and np.array_equal(items[0].label, label) and items[0].depth[0, 0] == 12.5
    out = encode_v1(items, [np.full((8, 16, 3), 7, np.uint8)] * 2)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["predictions"][1]["image"]["b64"]))))
    assert decoded.shape == (8, 16, 3) and (decoded == 7).all() and out["predictions"][0]["seed"] == 3
    bad = [
        ({"instances": []}, "at least one instance"),
        ({"instances": [{"label": {"b64": "@@"}, "depth": npy(depth)}]}, "not valid base64"),
        ({"instances": [{"label": b64(b"not an image"), "depth": npy(depth)}]}, "not a PNG"),
        ({"instances": [{"label": png(np.zeros((8, 16, 3), np.uint8)), "depth": npy(depth)}]}, "single-channel"),
        ({"instances": [{"label": png(label), "depth": b64(b"junk")}]}, r"not a \.npy"),
        ({"instances": [{"label": png(label), "depth": npy(depth[:4])}]}, "differs from the label"),
        ({"instances": [{"label": png(label), "depth": npy(depth)}] * 17}, "at most 16 instances"),
    ]
    for body, message in bad:
        with pytest.raises(RequestError, match=message):
            parse_v1(body, LIMITS)


def test_batcher_groups_compatible_requests_up_to_max_batch():
    from prometheus_client import CollectorRegistry

    from urbangen.export.server import Batcher, Metrics

    calls: list[list[int]] = []

    def render(items: list[GenerationRequest]) -> list[np.ndarray]:
        calls.append([item.seed for item in items])
        return [np.full((2, 2, 3), item.seed, np.uint8) for item in items]

    def item(seed: int, steps: int = 4) -> GenerationRequest:
        return GenerationRequest(np.zeros((2, 2), np.uint8), None, seed, steps, None)

    registry = CollectorRegistry()
    batcher = Batcher(render, max_batch=3, max_wait_s=0.2, metrics=Metrics("g", registry))

    async def run() -> list[list[np.ndarray]]:
        requests = [[item(1)], [item(2)], [item(3, steps=9)], [item(4), item(5)]]
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    results = asyncio.run(run())
    assert [[int(image[0, 0, 0]) for image in result] for result in results] == [[1], [2], [3], [4, 5]]
    assert sorted(sorted(call) for call in calls) == [[1, 2], [3], [4, 5]]  # 3 collected, split by steps
    assert registry.get_sample_value("urbangen_images_generated_total", {"model": "g"}) == 5
    assert registry.get_sample_value("urbangen_batch_size_count", {"model": "g"}) == 3
    batcher.executor.shutdown()
