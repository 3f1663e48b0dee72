"""The generator service: a KServe ``Model`` answering V2 and V1 requests, with request batching and metrics.

* Loading happens in a background thread after the HTTP server is up: liveness (``/v2/health/live``)
  answers at once, readiness (``/v2/models/<name>/ready``) only once the generator is loaded. A failed
  load stops the server with the error (the pod restarts and shows it).
* Concurrent requests are queued; a single worker collects up to ``max_batch`` images within
  ``max_wait_ms``, groups those that can share a batch (same size, steps, guidance), and renders each
  group in one ``generate`` call on a dedicated thread, so the event loop keeps answering.
* ``/metrics`` (Prometheus) carries KServe's request latencies plus ``urbangen_*`` counters: images,
  rejected requests, batch sizes, generation time and queue depth.
* kserve's REST server binds 0.0.0.0; :func:`serve` binds the host it is given (127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferRequest, Model
from kserve.errors import InvalidInput

from urbangen.errors import UrbangenError
from urbangen.export.protocol import GenerationRequest, Limits, RequestError, encode_v1, encode_v2, parse_v1, parse_v2
from urbangen.export.runtime import RuntimeConfig, load_runtime, resolve_model_uri

log = logging.getLogger("urbangen.serve")


class Metrics:
    """The service's own Prometheus metrics, registered on ``registry`` (prometheus_client's by default)."""

    def __init__(self, model_name: str, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = registry or REGISTRY
        labels = {"model": model_name}
        self.images = Counter("urbangen_images_generated", "Images generated", ["model"], registry=registry).labels(
            **labels
        )
        self.rejected = Counter(
            "urbangen_requests_rejected",
            "Requests refused as malformed (HTTP 400)",
            ["model", "protocol"],
            registry=registry,
        )
        self.batch = Histogram(
            "urbangen_batch_size",
            "Images per generate call",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32),
            registry=registry,
        ).labels(**labels)
        self.seconds = Histogram(
            "urbangen_generate_seconds",
            "Wall time of one generate call",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        ).labels(**labels)
        self.queue = Gauge(
            "urbangen_queue_depth", "Images waiting to be generated", ["model"], registry=registry
        ).labels(**labels)
        self.model_name = model_name


class Batcher:
    """Collects concurrent requests into batches and runs ``render(items) -> images`` on one worker thread."""

    def __init__(
        self,
        render: Callable[[list[GenerationRequest]], list[np.ndarray]],
        max_batch: int,
        max_wait_s: float,
        metrics: Metrics,
    ) -> None:
        self.render = render
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="urbangen-generate")
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, items: list[GenerationRequest]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work())
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        self.metrics.queue.inc(len(items))
        return list(await asyncio.gather(*futures))

    async def _collect(self) -> list[tuple[GenerationRequest, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        pending = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(pending) < self.max_batch and (remaining := deadline - loop.time()) > 0:
            try:
                pending.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return pending

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect()
            groups: dict[tuple, list] = defaultdict(list)
            for item, future in pending:
                groups[item.batch_key()].append((item, future))
            for group in groups.values():
                items = [item for item, _ in group]
                self.metrics.queue.dec(len(items))
                started = time.perf_counter()
                try:
                    images = await loop.run_in_executor(self.executor, self.render, items)
                except Exception as exc:  # delivered to every waiting request
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.metrics.seconds.observe(time.perf_counter() - started)
                self.metrics.batch.observe(len(items))
                self.metrics.images.inc(len(items))
                for (_, future), image in zip(group, images, strict=True):
                    if not future.done():
                        future.set_result(image)


@dataclass(frozen=True)
class ServeOptions:
    """How the service runs: where the generator comes from, the backend, batching and request limits."""

    name: str = "urbangen-generator"
    generator: Path | None = None
    model_uri: str | None = None  # models:/<name>@<alias> in the MLflow registry
    cache_dir: Path = Path("/tmp/urbangen-models")
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    max_batch: int = 4
    max_wait_ms: float = 20.0
    max_side: int = 2048
    max_steps: int = 100
    # colour calibration of requests that do not choose one (none|pooled|exemplar); auto: the generator's
    # richest (its modes run none, pooled, exemplar), which is what the demo's generate step applies
    calibrate: str = "auto"


def resolve_generator(options: ServeOptions) -> Path:
    """The local generator folder: ``--generator``, or the registry alias downloaded into the cache."""
    if options.model_uri is not None:
        return resolve_model_uri(options.model_uri, options.cache_dir)
    if options.generator is None or not options.generator.is_dir():
        raise UrbangenError(f"generator folder not found: {options.generator}")
    return options.generator


class GeneratorModel(Model):
    """The KServe model: V2 and V1 predict over a generator runtime."""

    def __init__(self, options: ServeOptions, registry: Any = None) -> None:
        super().__init__(options.name)
        self.options = options
        self.metrics = Metrics(options.name, registry)
        self.runtime: Any = None
        self.limits: Limits | None = None
        self.load_error: BaseException | None = None
        self._lock = threading.Lock()
        self.batcher = Batcher(self._render, options.max_batch, options.max_wait_ms / 1000, self.metrics)

    def load(self) -> bool:
        """Resolve and load the generator (idempotent; a concurrent call returns without waiting)."""
        if not self._lock.acquire(blocking=False):
            return self.ready
        try:
            if not self.ready:
                folder = resolve_generator(self.options)
                started = time.perf_counter()
                self.runtime = load_runtime(folder, self.options.runtime)
                spec = self.runtime.spec
                if spec is None:
                    raise UrbangenError(f"{folder} is a stage-1 generator (no control branch): serve a stage-2 folder")
                calibrations = self.runtime.calibrations
                default = calibrations[-1] if self.options.calibrate == "auto" else self.options.calibrate
                if default not in calibrations:
                    raise UrbangenError(
                        f"--calibrate {self.options.calibrate}: {folder} can apply {list(calibrations)} only "
                        "(its stage 2 recorded no target colour statistics for that mode)"
                    )
                self.limits = Limits(
                    num_classes=spec.num_classes,
                    ignore=self.runtime.taxonomy.ignore,
                    depth=spec.depth,
                    max_side=self.options.max_side,
                    max_steps=self.options.max_steps,
                    calibrations=calibrations,
                    default_calibrate=default,
                )
                log.info(
                    "loaded %s (%s backend) in %.1f s; requests without calibrate get %r",
                    folder,
                    self.options.runtime.backend,
                    time.perf_counter() - started,
                    default,
                )
                self.ready = True
        finally:
            self._lock.release()
        return self.ready

    def _render(self, items: list[GenerationRequest]) -> list[np.ndarray]:
        first = items[0]
        labels = np.stack([item.label for item in items])
        depth = np.stack([item.depth for item in items]) if first.depth is not None else None
        images = self.runtime.generate(
            labels,
            [item.seed for item in items],
            depth=depth,
            steps=first.steps,
            guidance=first.guidance,
            batch_size=len(items),
            calibrate=first.calibrate,
        )
        return list(images)

    def _guidance(self, item: GenerationRequest) -> float:
        return item.guidance if item.guidance is not None else float(self.runtime.config["sampling"]["guidance"])

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        v2 = isinstance(payload, InferRequest)
        try:
            items = [parse_v2(payload, self.limits)] if v2 else parse_v1(payload, self.limits)
        except RequestError as exc:
            self.metrics.rejected.labels(model=self.name, protocol="v2" if v2 else "v1").inc()
            raise InvalidInput(str(exc)) from None
        try:
            images = await self.batcher.submit(items)
        except UrbangenError as exc:  # a request the checks let through but the generator refuses
            raise InvalidInput(str(exc)) from None
        if v2:
            item = replace(items[0], guidance=self._guidance(items[0]))
            return encode_v2(self.name, payload.id, item, images[0], item.guidance)
        return encode_v1(items, images)

    def get_input_types(self) -> list[dict]:
        return [
            {"name": "label", "datatype": "UINT8", "shape": [-1, -1]},
            {"name": "depth", "datatype": "FP32", "shape": [-1, -1], "optional": True},
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, 3]}]


def serve(options: ServeOptions, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the REST server on ``host:port`` until interrupted; the model loads in the background."""
    from kserve import ModelServer
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    model = GeneratorModel(options)
    server = ModelServer(http_port=port, enable_grpc=False, workers=1)
    server.register_model(model)
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port)
    rest.config.host = host  # kserve hard-codes 0.0.0.0

    def load() -> None:
        try:
            model.load()
        except BaseException as exc:  # reported below, after the server has stopped
            model.load_error = exc
            log.error("loading the generator failed: %s", exc)
            rest._server.should_exit = True

    threading.Thread(target=load, name="urbangen-load", daemon=True).start()
    log.info(
        "serving %s on http://%s:%d (V2: /v2/models/%s/infer, V1: /v1/models/%s:predict)",
        options.name,
        host,
        port,
        options.name,
        options.name,
    )
    asyncio.run(rest.start())
    if model.load_error is not None:
        if isinstance(model.load_error, UrbangenError):
            raise model.load_error
        raise UrbangenError(f"loading the generator failed: {model.load_error}") from model.load_error
