"""TensorRT engines from the exported ONNX graphs, and a runner for them.

Build (``build_engines``): each ONNX graph is parsed with ``trt.OnnxParser`` and built with one
optimisation profile. Spatial size is the generator's model resolution (the server and the sampler's
``size_mode="model"`` always run there); the batch is dynamic between 1 and ``max_batch`` (optimised for
``opt_batch``) or, in static mode, fixed to ``static_batch`` so the runner can capture the engine in a CUDA
graph and replay it without per-launch overhead. Precision: ``fp16`` or ``bf16`` (TensorRT picks per layer,
inputs and outputs stay float32), or ``fp32``. Engines are tied to the GPU model and TensorRT version they
were built with; ``export.json`` records both.

Run (``EngineRunner``): torch CUDA tensors in and out, TensorRT 10's name-based tensor API
(``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``) on a dedicated stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from urbangen.errors import UrbangenError
from urbangen.io import atomic_path, sha256_file

PRECISIONS = ("fp16", "bf16", "fp32")
_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
}


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise UrbangenError(
            "the tensorrt format needs NVIDIA TensorRT (pip install 'urbangen[gpu]' on a machine with a CUDA GPU; "
            "the serving image built with serving/Dockerfile --target gpu has it)"
        ) from None
    return tensorrt


def profile_shapes(
    input_shapes: dict[str, tuple[int, ...]], resolution: tuple[int, int], factor: int, batch: tuple[int, int, int]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes per input. ``input_shapes`` are the ONNX shapes (-1 = dynamic); 4-D inputs get
    ``batch`` and their spatial size at image (``cond``) or model (``sample``, ``latents``) resolution."""
    height, width = resolution
    shapes = {}
    for name, shape in input_shapes.items():
        if len(shape) != 4:
            fixed = tuple(1 if d < 0 else d for d in shape)
            shapes[name] = (fixed, fixed, fixed)
            continue
        scale = 1 if name == "cond" else factor
        rest = (shape[1], height // scale, width // scale)
        shapes[name] = tuple((b, *rest) for b in batch)
    return shapes


def build_engine(
    onnx_path: Path, engine_path: Path, shapes: dict[str, tuple], precision: str = "fp16", workspace_gib: float = 8.0
) -> dict[str, Any]:
    """Parse ``onnx_path``, build a serialized engine with one optimisation profile, write it atomically."""
    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise UrbangenError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # also resolves <name>.onnx.data beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UrbangenError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision != "fp32":
        flag = getattr(trt.BuilderFlag, precision.upper(), None)
        if flag is None:
            raise UrbangenError(f"this TensorRT ({trt.__version__}) has no {precision} builder flag; use fp32")
        config.set_flag(flag)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in shapes:
            raise UrbangenError(f"{onnx_path}: no profile shape for input {tensor.name!r}")
        profile.set_shape(tensor.name, *shapes[tensor.name])
    config.add_optimization_profile(profile)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UrbangenError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    return {
        "file": engine_path.name,
        "sha256": sha256_file(engine_path),
        "precision": precision,
        "profile": {name: [list(s) for s in triple] for name, triple in shapes.items()},
        "build_seconds": round(time.perf_counter() - started, 1),
    }


def build_engines(
    folder: Path,
    onnx_record: dict[str, Any],
    resolution: tuple[int, int],
    factor: int,
    precision: str = "fp16",
    max_batch: int = 8,
    opt_batch: int | None = None,
    static_batch: int | None = None,
) -> dict[str, Any]:
    """Engines for every graph of ``folder/onnx`` into ``folder/tensorrt``; returns the export record."""
    trt = import_tensorrt()
    import onnx

    if not torch.cuda.is_available():
        raise UrbangenError("building TensorRT engines needs a CUDA GPU (none is visible)")
    if static_batch is not None:
        batch = (static_batch,) * 3
    else:
        if max_batch < 1:
            raise UrbangenError(f"max_batch must be at least 1, got {max_batch}")
        batch = (1, min(opt_batch or max_batch, max_batch), max_batch)
    engines = {}
    for name, graph in onnx_record["graphs"].items():
        onnx_path = folder / "onnx" / graph["file"]
        model = onnx.load(str(onnx_path), load_external_data=False)
        input_shapes = {
            i.name: tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
            for i in model.graph.input
        }
        shapes = profile_shapes(input_shapes, resolution, factor, batch)
        engines[name] = build_engine(onnx_path, folder / "tensorrt" / f"{name}.plan", shapes, precision)
    return {
        "engines": engines,
        "static": static_batch is not None,
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(),
    }


class EngineRunner:
    """Runs one serialized engine on torch CUDA tensors; optionally as a captured CUDA graph (static shapes)."""

    def __init__(self, path: Path, device: torch.device, cuda_graph: bool = False) -> None:
        trt = import_tensorrt()
        if not path.is_file():
            raise UrbangenError(f"TensorRT engine not found: {path}")
        self.device = device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise UrbangenError(f"cannot load TensorRT engine {path} (built for another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _TORCH_DTYPES[self.engine.get_tensor_dtype(n).name] for n in names}
        self.stream = torch.cuda.Stream(device=device)
        self.cuda_graph = cuda_graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, torch.Tensor] = {}

    def _bind(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Set input shapes and addresses; allocate outputs of the resolved shapes."""
        for name in self.input_names:
            tensor = inputs[name]
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        return outputs

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise UrbangenError("TensorRT execution failed (see the log above)")

    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs by name (any device/dtype: converted to the engine's) -> outputs by name on the device."""
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise UrbangenError(f"TensorRT engine inputs missing: {sorted(missing)}")
        feed = {n: inputs[n].to(self.device, self.dtypes[n]).contiguous() for n in self.input_names}
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        if self.cuda_graph:
            return self._replay(feed)
        with torch.cuda.stream(self.stream):
            outputs = self._bind(feed)
            self._execute()
        for tensor in feed.values():  # keep the inputs' memory until the engine has read it
            tensor.record_stream(self.stream)
        for tensor in outputs.values():  # and the outputs' until the caller is done with them
            tensor.record_stream(caller)
        caller.wait_stream(self.stream)
        return outputs

    def _replay(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Static shapes: copy into fixed buffers, replay the captured graph (captured on first use)."""
        if self._graph is None or any(self._static[n].shape != feed[n].shape for n in self.input_names):
            self._static = {n: t.clone() for n, t in feed.items()}
            with torch.cuda.stream(self.stream):
                outputs = self._bind(self._static)
                self._execute()  # one plain launch first: TensorRT allocates lazily, not allowed in capture
            self.stream.synchronize()
            self._static.update(outputs)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph, stream=self.stream):
                self._execute()
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                self._static[name].copy_(feed[name])
            self._graph.replay()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return {n: self._static[n].clone() for n in self.output_names}
