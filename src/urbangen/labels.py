"""Label taxonomies and per-dataset mappings to the target taxonomy.

The default target taxonomy is Cityscapes' 19 training classes (trainIds 0..18, 255 = ignore), read from
the official table in ``cityscapesscripts`` rather than retyped. A :class:`LabelMapping` turns one source
encoding (e.g. Cityscapes labelIds, SYNTHIA ids, Mapillary ids) into target ids with a lookup table and
declares which target classes the source can never provide, so evaluation can report the usual 16- and
13-class figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from urbangen.errors import UrbangenError

IGNORE = 255
UNMAPPED = -1  # lookup-table entry for an id the source does not define


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of classes; class ``i`` has id ``i``; ``ignore`` marks unlabelled pixels."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore: int = IGNORE

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise UrbangenError(f"taxonomy {self.name} has no class {name!r}; classes: {self.classes}") from None

    def palette(self) -> np.ndarray:
        """256x3 uint8 colour table (ignore and unused ids black)."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return table

    def colorize(self, label: np.ndarray) -> np.ndarray:
        return self.palette()[label.astype(np.intp) & 0xFF]

    def check(self, label: np.ndarray, source: object = "label") -> None:
        """Raise if ``label`` holds a value that is neither a class id nor ignore."""
        bad = (label >= self.num_classes) & (label != self.ignore)
        if bad.any():
            values = np.unique(label[bad])[:10].tolist()
            raise UrbangenError(
                f"{source}: values {values} are outside taxonomy {self.name} "
                f"(expected 0..{self.num_classes - 1} or {self.ignore} for ignore)"
            )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "colors": [list(c) for c in self.colors],
            "ignore": self.ignore,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        return cls(
            data["name"], tuple(data["classes"]), tuple(tuple(c) for c in data["colors"]), data.get("ignore", IGNORE)
        )


@cache
def cityscapes19() -> Taxonomy:
    """The 19 Cityscapes training classes, from the official ``cityscapesscripts`` label table."""
    from cityscapesscripts.helpers.labels import labels

    train = sorted((lab for lab in labels if 0 <= lab.trainId < IGNORE), key=lambda lab: lab.trainId)
    return Taxonomy("cityscapes19", tuple(lab.name for lab in train), tuple(tuple(lab.color) for lab in train))


@dataclass(frozen=True)
class LabelMapping:
    """Source id -> target id via a lookup table.

    ``lut[source_id]`` is a target id, ``IGNORE``, or ``UNMAPPED`` (-1) for ids the source never defines.
    ``missing`` lists target class names this source cannot provide (e.g. SYNTHIA: terrain, truck, train).
    """

    source: str
    lut: np.ndarray
    target: Taxonomy = field(default_factory=cityscapes19)
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.lut.ndim != 1 or self.lut.dtype != np.int32:
            raise ValueError("lut must be a 1-D int32 array")

    @property
    def covered(self) -> tuple[int, ...]:
        """Target class ids this source can provide."""
        return tuple(i for i, name in enumerate(self.target.classes) if name not in self.missing)

    def apply(self, label: np.ndarray, unknown: str = "error", source_path: object = "label") -> np.ndarray:
        """Map a source label array to uint8 target ids.

        ``unknown="error"`` raises on ids the source does not define (naming the file and the ids);
        ``unknown="ignore"`` maps them to ignore. Returns the mapped array; see :meth:`apply_counted`
        for the number of unknown pixels.
        """
        return self.apply_counted(label, unknown, source_path)[0]

    def apply_counted(
        self, label: np.ndarray, unknown: str = "error", source_path: object = "label"
    ) -> tuple[np.ndarray, int]:
        if unknown not in ("error", "ignore"):
            raise UrbangenError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        label = np.asarray(label)
        if label.size and (label.min() < 0 or label.max() >= len(self.lut)):
            values = np.unique(label[(label < 0) | (label >= len(self.lut))])[:10].tolist()
            raise UrbangenError(f"{source_path}: ids {values} are not {self.source} label ids")
        mapped = self.lut[label.astype(np.intp, copy=False)]
        unmapped = mapped == UNMAPPED
        count = int(unmapped.sum())
        if count:
            if unknown == "error":
                values = np.unique(label[unmapped])[:10].tolist()
                raise UrbangenError(
                    f"{source_path}: {count} pixels hold ids {values} that {self.source} does not define "
                    "(pass unknown='ignore' / --unknown ignore to map them to 255)"
                )
            mapped = np.where(unmapped, IGNORE, mapped)
        return mapped.astype(np.uint8), count


def lut_from_pairs(pairs: dict[int, int], size: int = 256) -> np.ndarray:
    """Build a lookup table: ids in ``pairs`` map to their value, every other id is UNMAPPED."""
    lut = np.full(size, UNMAPPED, dtype=np.int32)
    for src, dst in pairs.items():
        lut[src] = dst
    return lut


@cache
def cityscapes_label_ids() -> LabelMapping:
    """Cityscapes labelIds (0..33, and -1 'license plate' which is never stored) -> trainIds."""
    from cityscapesscripts.helpers.labels import labels

    pairs = {lab.id: (lab.trainId if 0 <= lab.trainId < IGNORE else IGNORE) for lab in labels if lab.id >= 0}
    return LabelMapping("cityscapes-labelIds", lut_from_pairs(pairs))


@cache
def train_ids() -> LabelMapping:
    """Identity for labels already in trainIds (0..18 and 255)."""
    pairs = {i: i for i in range(cityscapes19().num_classes)}
    pairs[IGNORE] = IGNORE
    return LabelMapping("trainIds", lut_from_pairs(pairs))
