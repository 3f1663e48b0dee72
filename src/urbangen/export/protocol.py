"""Request and response formats of the generator service, apart from the model and the server.

Open Inference Protocol (V2), ``POST /v2/models/<name>/infer``::

    {"inputs": [{"name": "label", "datatype": "UINT8", "shape": [H, W], "data": [...trainIds...]},
                {"name": "depth", "datatype": "FP32",  "shape": [H, W], "data": [...metres...]}],   # optional
     "parameters": {"seed": 7, "steps": 20, "guidance": 2.0, "calibrate": "exemplar"}}             # optional
    -> {"outputs": [{"name": "image", "datatype": "UINT8", "shape": [H, W, 3], "data": [...]}],
        "parameters": {"seed": 7, "steps": 20, "guidance": 2.0, "calibrate": "exemplar"}}

V1, ``POST /v1/models/<name>:predict``, PNG in and out::

    {"instances": [{"label": {"b64": "<PNG, 8-bit single channel, trainIds>"},
                    "depth": {"b64": "<.npy, float32 HxW metres>"}, "seed": 7, "steps": 20, "guidance": 2.0,
                    "calibrate": "exemplar"}]}
    -> {"predictions": [{"image": {"b64": "<PNG RGB>"}, "seed": 7, "calibrate": "exemplar", "height": H, "width": W}]}

Every field is checked (names, dtypes, shapes, size limits, id range, parameter ranges); a violation is a
:class:`RequestError` whose message names the field and what was expected (the server answers 400 with it).
A missing seed is drawn at random and returned, so every answer can be reproduced. ``calibrate`` (``none``,
``pooled``, ``exemplar``: the target colour calibration of ``urbangen generate``, see
:func:`urbangen.diffusion.appearance.calibrate`) defaults to the server's ``--calibrate``; a mode the
generator has no statistics for is refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from urbangen.diffusion.appearance import MODES as CALIBRATION_MODES

MAX_SEED = 2**63 - 1


class RequestError(ValueError):
    """A malformed request; the message is returned to the client."""


@dataclass(frozen=True)
class Limits:
    """What a request may ask for. ``num_classes``/``depth`` come from the loaded generator."""

    num_classes: int
    ignore: int = 255
    depth: bool = False
    max_side: int = 2048
    max_pixels: int = 2048 * 1024
    max_steps: int = 100
    default_steps: int = 20
    guidance_range: tuple[float, float] = (0.0, 20.0)
    max_instances: int = 16
    calibrations: tuple[str, ...] = ("none",)  # the modes the loaded generator can apply
    default_calibrate: str = "none"


@dataclass(frozen=True)
class GenerationRequest:
    """One image to render."""

    label: np.ndarray  # (H, W) uint8 trainIds
    depth: np.ndarray | None  # (H, W) float32 metres
    seed: int
    steps: int
    guidance: float | None  # None: the generator's recorded default
    calibrate: str = "none"

    def batch_key(self) -> tuple:
        """Requests with equal keys can be rendered in one batch."""
        return self.label.shape, self.steps, self.guidance, self.depth is not None, self.calibrate


# --- checks shared by both protocols ----------------------------------------------------------------------


def check_size(height: int, width: int, limits: Limits, field: str) -> None:
    if height < 1 or width < 1:
        raise RequestError(f"{field}: empty image ({height}x{width})")
    if max(height, width) > limits.max_side or height * width > limits.max_pixels:
        raise RequestError(
            f"{field}: {height}x{width} is too large (at most {limits.max_side} pixels a side and "
            f"{limits.max_pixels} pixels in all)"
        )


def check_label(values: np.ndarray, limits: Limits, field: str) -> np.ndarray:
    """Integer array -> uint8 trainIds, refusing ids outside 0..num_classes-1 and ignore."""
    if values.dtype.kind not in "iu":
        raise RequestError(f"{field}: trainIds must be integers, got {values.dtype}")
    bad = (values < 0) | ((values >= limits.num_classes) & (values != limits.ignore))
    if bad.any():
        found = np.unique(values[bad])[:5].tolist()
        raise RequestError(
            f"{field}: ids {found} are not trainIds (expected 0..{limits.num_classes - 1} or {limits.ignore})"
        )
    return values.astype(np.uint8)


def check_depth(
    values: np.ndarray | None, label_shape: tuple[int, ...], limits: Limits, field: str
) -> np.ndarray | None:
    if values is None:
        if limits.depth:
            raise RequestError(f"{field}: this generator needs a depth map (FP32 HxW, metres)")
        return None
    if not limits.depth:
        raise RequestError(f"{field}: this generator does not use depth; leave it out")
    if values.dtype.kind not in "iuf":
        raise RequestError(f"{field}: expected numbers, got {values.dtype}")
    if values.shape != label_shape:
        raise RequestError(f"{field}: shape {list(values.shape)} differs from the label's {list(label_shape)}")
    values = values.astype(np.float32)
    if not np.isfinite(values).all() or (values < 0).any():
        raise RequestError(f"{field}: depth must be finite and >= 0 metres (0 = unknown)")
    return values


PARAMETERS = ("seed", "steps", "guidance", "calibrate")


def check_params(params: dict[str, Any], limits: Limits, field: str) -> dict[str, Any]:
    """``seed``, ``steps``, ``guidance`` and ``calibrate`` (the :class:`GenerationRequest` fields) from a
    parameter mapping, defaults filled in; unknown names are refused."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"{field}: unknown parameters {unknown} (expected {', '.join(PARAMETERS)})")
    seed = params.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise RequestError(f"{field}.seed: expected an integer in 0..{MAX_SEED}, got {seed!r}")
    steps = params.get("steps", limits.default_steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= limits.max_steps:
        raise RequestError(f"{field}.steps: expected an integer in 1..{limits.max_steps}, got {steps!r}")
    guidance = params.get("guidance")
    low, high = limits.guidance_range
    if guidance is not None and (
        isinstance(guidance, bool)
        or not isinstance(guidance, (int, float))
        or not low <= guidance <= high
        or not math.isfinite(guidance)
    ):
        raise RequestError(f"{field}.guidance: expected a number in {low}..{high}, got {guidance!r}")
    calibrate = params.get("calibrate", limits.default_calibrate)
    if calibrate not in limits.calibrations:
        why = " (this generator has no target colour statistics for it)" if calibrate in CALIBRATION_MODES else ""
        raise RequestError(f"{field}.calibrate: expected one of {list(limits.calibrations)}, got {calibrate!r}{why}")
    return {
        "seed": seed,
        "steps": steps,
        "guidance": None if guidance is None else float(guidance),
        "calibrate": calibrate,
    }


# --- V2 ---------------------------------------------------------------------------------------------------


def _v2_array(tensor: Any, datatype: str, limits: Limits) -> np.ndarray:
    """The data of one V2 input as an array of its declared shape, without lossy casts."""
    name = tensor.name
    if tensor.datatype != datatype:
        raise RequestError(f"input {name!r}: datatype must be {datatype}, got {tensor.datatype}")
    shape = [int(d) for d in tensor.shape]
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise RequestError(f"input {name!r}: shape must be [H, W] (or [1, H, W]), got {list(tensor.shape)}")
    check_size(shape[0], shape[1], limits, f"input {name!r}")
    raw = getattr(tensor, "_raw_data", None)
    if raw is not None:  # binary tensor extension
        dtype = np.uint8 if datatype == "UINT8" else np.float32
        if len(raw) != shape[0] * shape[1] * np.dtype(dtype).itemsize:
            raise RequestError(f"input {name!r}: {len(raw)} bytes do not fill shape {shape} of {datatype}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    try:
        values = np.asarray(tensor.data)
    except ValueError as exc:  # ragged nested lists
        raise RequestError(f"input {name!r}: data is not a regular array ({exc})") from None
    if values.size != shape[0] * shape[1]:
        raise RequestError(f"input {name!r}: {values.size} values do not fill shape {shape}")
    if values.dtype.kind not in "iuf":
        raise RequestError(f"input {name!r}: data must be numbers, got {values.dtype}")
    if datatype == "UINT8" and values.dtype.kind == "f":
        if not np.array_equal(values, np.round(values)):
            raise RequestError(f"input {name!r}: UINT8 data holds non-integers")
        values = values.astype(np.int64)
    return values.reshape(shape)


def parse_v2(request: Any, limits: Limits) -> GenerationRequest:
    """A kserve ``InferRequest`` -> one :class:`GenerationRequest`."""
    inputs = {tensor.name: tensor for tensor in request.inputs}
    unknown = sorted(set(inputs) - {"label", "depth"})
    if unknown:
        raise RequestError(f"unknown inputs {unknown} (expected 'label' and optionally 'depth')")
    if "label" not in inputs:
        raise RequestError("missing input 'label' (UINT8 [H, W] trainIds)")
    label = check_label(_v2_array(inputs["label"], "UINT8", limits), limits, "input 'label'")
    depth = _v2_array(inputs["depth"], "FP32", limits) if "depth" in inputs else None
    depth = check_depth(depth, label.shape, limits, "input 'depth'")
    params = request.parameters or {}
    if not isinstance(params, dict):
        raise RequestError("parameters: expected a JSON object")
    return GenerationRequest(label, depth, **check_params(dict(params), limits, "parameters"))


def encode_v2(
    model_name: str, request_id: str | None, item: GenerationRequest, image: np.ndarray, guidance: float
) -> Any:
    from kserve import InferOutput, InferResponse

    output = InferOutput("image", list(image.shape), "UINT8")
    output.set_data_from_numpy(image, binary_data=False)
    return InferResponse(
        response_id=request_id or "",
        model_name=model_name,
        infer_outputs=[output],
        parameters={"seed": item.seed, "steps": item.steps, "guidance": guidance, "calibrate": item.calibrate},
    )


# --- V1 ---------------------------------------------------------------------------------------------------


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise RequestError(f'{field}: expected {{"b64": "<base64 string>"}}')
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{field}: not valid base64") from None


def decode_label_png(data: bytes, limits: Limits, field: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        raise RequestError(f"{field}: not a PNG/image file") from None
    check_size(image.height, image.width, limits, field)  # before decoding the pixels
    if image.mode not in ("L", "P"):
        raise RequestError(f"{field}: expected an 8-bit single-channel PNG of trainIds, got mode {image.mode}")
    try:
        values = np.asarray(image)
    except OSError as exc:
        raise RequestError(f"{field}: truncated or corrupt image ({exc})") from None
    return check_label(values, limits, field)


def decode_depth_npy(data: bytes, label_shape: tuple[int, ...], limits: Limits, field: str) -> np.ndarray | None:
    try:
        values = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise RequestError(f"{field}: not a .npy array (float32 HxW metres)") from None
    return check_depth(values, label_shape, limits, field)


def parse_v1(body: dict, limits: Limits) -> list[GenerationRequest]:
    """``{"instances": [...]}`` -> one :class:`GenerationRequest` per instance."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError('expected {"instances": [ ... ]} with at least one instance')
    if len(instances) > limits.max_instances:
        raise RequestError(f"at most {limits.max_instances} instances per request, got {len(instances)}")
    items = []
    for i, instance in enumerate(instances):
        field = f"instances[{i}]"
        if not isinstance(instance, dict) or "label" not in instance:
            raise RequestError(f'{field}: expected an object with "label": {{"b64": "<PNG>"}}')
        label = decode_label_png(_b64(instance["label"], f"{field}.label"), limits, f"{field}.label")
        depth = None
        if "depth" in instance:
            depth = decode_depth_npy(_b64(instance["depth"], f"{field}.depth"), label.shape, limits, f"{field}.depth")
        else:
            check_depth(None, label.shape, limits, f"{field}.depth")
        params = {k: v for k, v in instance.items() if k not in ("label", "depth")}
        items.append(GenerationRequest(label, depth, **check_params(params, limits, field)))
    return items


def encode_png(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_v1(items: list[GenerationRequest], images: list[np.ndarray]) -> dict:
    return {
        "predictions": [
            {
                "image": {"b64": encode_png(image)},
                "seed": item.seed,
                "calibrate": item.calibrate,
                "height": image.shape[0],
                "width": image.shape[1],
            }
            for item, image in zip(items, images, strict=True)
        ]
    }
