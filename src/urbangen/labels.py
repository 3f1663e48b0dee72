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
        for name in self.missing:
            self.target.index(name)  # raises on a name the taxonomy does not have
        provided = {int(v) for v in np.unique(self.lut)} - {UNMAPPED, IGNORE}
        bad = sorted(v for v in provided if not 0 <= v < self.target.num_classes)
        if bad:
            raise UrbangenError(f"mapping {self.source}: target ids {bad} are not in taxonomy {self.target.name}")
        contradicting = sorted(self.target.classes[v] for v in provided if self.target.classes[v] in self.missing)
        if contradicting:
            raise UrbangenError(f"mapping {self.source}: maps ids to {contradicting}, which it declares missing")

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
        if not np.issubdtype(label.dtype, np.integer):
            raise UrbangenError(f"{source_path}: label ids must be integers, got dtype {label.dtype}")
        index = label.astype(np.intp, copy=False)
        outside = None
        if label.size and (label.min() < 0 or label.max() >= len(self.lut)):
            # ids beyond the table are unknown, like ids the table leaves UNMAPPED
            outside = (index < 0) | (index >= len(self.lut))
            index = np.where(outside, 0, index)
        mapped = self.lut[index]
        unmapped = mapped == UNMAPPED
        if outside is not None:
            unmapped |= outside
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


def mapping_from_names(
    source: str, names: dict[int, str], missing: tuple[str, ...] = (), target: Taxonomy | None = None
) -> LabelMapping:
    """A mapping from ``{source_id: target class name or "ignore"}``; ids not listed are unknown."""
    target = target or cityscapes19()
    size = max(256, max(names, default=0) + 1)
    pairs = {src: IGNORE if name == "ignore" else target.index(name) for src, name in names.items()}
    return LabelMapping(source, lut_from_pairs(pairs, size), target, tuple(missing))


# SYNTHIA-RAND-CITYSCAPES class ids (its README) -> Cityscapes class names. Terrain (16), truck (18) and
# train (20) are in SYNTHIA's table but (almost) never occur in RAND-CITYSCAPES, so they map to ignore and
# the source declares them missing: the usual 16-class evaluation.
SYNTHIA_CLASSES = (
    *("void", "sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "car", "traffic-sign"),
    *("pedestrian", "bicycle", "motorcycle", "parking-slot", "road-work", "traffic-light", "terrain", "rider"),
    *("truck", "bus", "train", "wall", "lanemarking"),
)
_SYNTHIA_TO_CITYSCAPES = {
    "pedestrian": "person",
    "traffic-sign": "traffic sign",
    "traffic-light": "traffic light",
    **dict.fromkeys(("void", "parking-slot", "road-work", "lanemarking", "terrain", "truck", "train"), "ignore"),
}


@cache
def synthia_ids() -> LabelMapping:
    """SYNTHIA-RAND-CITYSCAPES ids 0..22 -> trainIds; missing: terrain, truck, train."""
    names = {i: _SYNTHIA_TO_CITYSCAPES.get(name, name) for i, name in enumerate(SYNTHIA_CLASSES)}
    return mapping_from_names("synthia", names, missing=("terrain", "truck", "train"))


# Mapillary Vistas class names (v1.2's 66 and v2.0's 124, as listed in their config.json) -> Cityscapes
# class. Follows the mapping commonly used to evaluate Cityscapes-trained models on Vistas: lane markings,
# parking and rail track are road; curb, curb cut and pedestrian area sidewalk; bridge and tunnel
# building; guard rail fence; sand and snow terrain; sign frames traffic sign; on-rails train. v2.0's
# finer names follow their v1.2 parent (traffic islands are sidewalk, as Cityscapes defines it).
_MAPILLARY_BY_TARGET = {
    "road": """construction--flat--road construction--flat--bike-lane construction--flat--crosswalk-plain
        construction--flat--parking construction--flat--rail-track construction--flat--service-lane
        construction--flat--driveway construction--flat--parking-aisle construction--flat--road-shoulder
        marking--crosswalk-zebra marking--general marking--continuous--dashed marking--continuous--solid
        marking--continuous--zigzag marking--discrete--ambiguous marking--discrete--arrow--left
        marking--discrete--arrow--other marking--discrete--arrow--right
        marking--discrete--arrow--split-left-or-straight marking--discrete--arrow--split-right-or-straight
        marking--discrete--arrow--straight marking--discrete--crosswalk-zebra marking--discrete--give-way-row
        marking--discrete--give-way-single marking--discrete--hatched--chevron
        marking--discrete--hatched--diagonal marking--discrete--other-marking marking--discrete--stop-line
        marking--discrete--symbol--bicycle marking--discrete--symbol--other marking--discrete--text
        marking-only--continuous--dashed marking-only--discrete--crosswalk-zebra
        marking-only--discrete--other-marking marking-only--discrete--text""",
    "sidewalk": """construction--barrier--curb construction--flat--curb-cut construction--flat--pedestrian-area
        construction--flat--sidewalk construction--flat--traffic-island""",
    "building": """construction--structure--building construction--structure--bridge
        construction--structure--tunnel construction--structure--garage""",
    "wall": "construction--barrier--wall",
    "fence": "construction--barrier--fence construction--barrier--guard-rail",
    "pole": "object--support--pole object--support--utility-pole object--support--pole-group",
    "traffic light": """object--traffic-light object--traffic-light--cyclists object--traffic-light--general-horizontal
        object--traffic-light--general-single object--traffic-light--general-upright object--traffic-light--other
        object--traffic-light--pedestrians""",
    "traffic sign": """object--traffic-sign--front object--support--traffic-sign-frame
        object--traffic-sign--direction-front object--traffic-sign--temporary-front
        object--traffic-sign--information-parking""",
    "vegetation": "nature--vegetation",
    "terrain": "nature--terrain nature--sand nature--snow",
    "sky": "nature--sky",
    "person": "human--person human--person--individual human--person--person-group",
    "rider": "human--rider--bicyclist human--rider--motorcyclist human--rider--other-rider",
    "car": "object--vehicle--car",
    "truck": "object--vehicle--truck",
    "bus": "object--vehicle--bus",
    "train": "object--vehicle--on-rails",
    "motorcycle": "object--vehicle--motorcycle",
    "bicycle": "object--vehicle--bicycle",
    "ignore": """animal--bird animal--ground-animal construction--barrier--other-barrier nature--mountain
        nature--water object--banner object--bench object--bike-rack object--billboard object--catch-basin
        object--cctv-camera object--fire-hydrant object--junction-box object--mailbox object--manhole
        object--phone-booth object--pothole object--street-light object--traffic-sign--back object--trash-can
        object--vehicle--boat object--vehicle--caravan object--vehicle--other-vehicle object--vehicle--trailer
        object--vehicle--wheeled-slow void--car-mount void--ego-vehicle void--unlabeled
        construction--barrier--ambiguous construction--barrier--concrete-block construction--barrier--road-median
        construction--barrier--road-side construction--barrier--separator construction--barrier--temporary
        object--parking-meter object--sign--advertisement object--sign--ambiguous object--sign--back
        object--sign--information object--sign--other object--sign--store object--traffic-cone
        object--traffic-sign--ambiguous object--traffic-sign--direction-back object--traffic-sign--temporary-back
        object--vehicle--vehicle-group object--water-valve void--dynamic void--ground void--static""",
}


def mapillary_to_cityscapes() -> dict[str, str]:
    """Every known Mapillary Vistas class name (v1.2 and v2.0) -> Cityscapes class name or "ignore"."""
    return {name: target for target, block in _MAPILLARY_BY_TARGET.items() for name in block.split()}


def mapillary_ids(class_names: list[str] | tuple[str, ...], source: str = "mapillary") -> LabelMapping:
    """Mapping for Vistas label ids, where id ``i`` is ``class_names[i]`` (the order of config.json's labels).

    Names this table does not know stay unknown: their pixels are an error, or ignore when asked.
    """
    table = mapillary_to_cityscapes()
    names = {i: table[name] for i, name in enumerate(class_names) if name in table}
    return mapping_from_names(source, names)
