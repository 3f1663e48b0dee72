"""Progress of a long stage: a tqdm bar on stderr (done / kept / dropped, images/s, ETA) and, for the
pipeline and MLflow, the same numbers handed to an ``on_log`` callback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

LogFn = Callable[[dict[str, Any]], None]


class Progress:
    """Count finished samples (and images) of one stage; report to tqdm and ``on_log``."""

    def __init__(self, stage: str, total: int, initial: int = 0, on_log: LogFn | None = None) -> None:
        from tqdm import tqdm

        self.stage = stage
        self.total = total
        self.done = initial
        self.images = 0
        self.counts: dict[str, int] = {}
        self.on_log = on_log
        self.start = time.perf_counter()
        self._initial = initial
        self.bar = tqdm(total=total, initial=initial, desc=stage, unit="map", file=sys.stderr, dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def snapshot(self) -> dict[str, Any]:
        """done, total, counts, images/s and ETA (seconds) so far."""
        elapsed = max(self.elapsed, 1e-9)
        rate = (self.done - self._initial) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return {
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            **self.counts,
            "images_per_s": self.images / elapsed,
            "elapsed_s": elapsed,
            "eta_s": eta,
        }

    def update(self, samples: int = 1, images: int = 0, **counts: int) -> None:
        self.done += samples
        self.images += images
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        snap = self.snapshot()
        self.bar.set_postfix({**self.counts, "img/s": f"{snap['images_per_s']:.2f}"}, refresh=False)
        self.bar.update(samples)
        if self.on_log is not None:
            self.on_log(snap)

    def close(self) -> dict[str, Any]:
        self.bar.close()
        return self.snapshot()
