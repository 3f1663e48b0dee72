"""Orchestration of generate / merge / filter-rectify with deterministic test doubles for the two models
(a palette painter that sometimes forgets cars, a nearest-colour segmenter): what is asserted here is the
bookkeeping (selection, rectification wiring, lineage, resume, merge), not image quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ColourSegmenter, PainterGenerator

from urbangen.datasets import open_dataset
from urbangen.datasets.writer import read_manifest
from urbangen.errors import UrbangenError
from urbangen.generate.config import GenerateConfig, McocConfig, SourceConfig
from urbangen.generate.filtering import filter_and_rectify
from urbangen.generate.merge import merge_shards
from urbangen.generate.run import candidates_dir, generate_candidates
from urbangen.generate.seeds import candidate_seed
from urbangen.io import read_label, write_png

ROAD, BUILDING, SKY, CAR = 0, 2, 10, 13
K = 3


def car_scene(i: int) -> np.ndarray:
    label = np.zeros((24, 40), np.uint8)
    label[:8] = SKY
    label[8:14, 2 + i : 20 + i] = BUILDING
    label[15:22, 20 - i : 32 - i] = CAR
    return label


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "labels"
    for i in range(8):
        write_png(folder / f"scene{i}.png", car_scene(i))
    return folder


def config(tmp_path: Path, root: Path, **overrides) -> GenerateConfig:
    fields = {
        "source": SourceConfig(format="labels", root=root),
        "generator": tmp_path / "generator",
        "out": tmp_path / "out",
        "candidates": K,
        "steps": 1,
        "batch_size": K,
        # absolute scores: this module checks the bookkeeping against hand-computed consistencies
        "mcoc": McocConfig(erosion=1, min_object_size=10, threshold=0.5, warn_class_drop=0.2, relative_to="absolute"),
        **overrides,
    }
    return GenerateConfig(**fields)


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_filter_keeps_best_candidate_drops_bad_maps_and_rectifies(tmp_path, source):
    painter = PainterGenerator(miss=0.7)
    cfg = config(tmp_path, source)
    generate_candidates(cfg, generator=painter)
    ids = [f"scene{i}" for i in range(8)]
    first_drawn = {}
    for sample_id in ids:
        drawn = [k for k in range(K) if not painter.forgets(candidate_seed(cfg.seed, sample_id, k))]
        first_drawn[sample_id] = drawn[0] if drawn else None
    hopeless = [i for i in ids if first_drawn[i] is None]
    assert hopeless and len(hopeless) < len(ids), "the test needs both kinds of maps"

    # threshold 0.5: every map kept; where no candidate drew the car, the car becomes ignore
    summary = filter_and_rectify(cfg, segmenter=ColourSegmenter())
    assert summary["kept"] == 8 and summary["dropped"] == 0
    records = {r["source_id"]: r for r in read_manifest(cfg.out / "dataset")}
    reader = open_dataset("cityscapes", cfg.out / "dataset")
    samples = {s.id: s for s in reader.index("train").samples}
    for sample_id, record in records.items():
        label = read_label(samples[record["id"]].label)
        if first_drawn[sample_id] is None:
            assert record["mcoc"] == pytest.approx(0.75)  # road, sky, building drawn; car not
            assert record["rectified_pixels"]["objects"] == {"car": int((car_scene(0) == CAR).sum())}
            assert (label[car_scene(int(sample_id[-1])) == CAR] == 255).all()
        else:
            assert record["candidate"] == first_drawn[sample_id] and record["mcoc"] == 1.0
            assert record["rectified_pixels"]["total"] == 0
            assert (label == car_scene(int(sample_id[-1]))).all()
        assert record["seed"] == candidate_seed(cfg.seed, sample_id, record["candidate"])
        assert record["generator_digest"] == "painter-test-double" and len(record["candidates"]) == K
        assert set(record["per_class_consistency"]) == {"road", "building", "sky", "car"}
    assert (cfg.out / "dataset" / "preview.png").is_file()

    # threshold 0.9: hopeless maps are dropped, counted per class and warned about
    strict = cfg.model_copy(update={"mcoc": cfg.mcoc.model_copy(update={"threshold": 0.9})})
    summary = filter_and_rectify(strict, out_dir=tmp_path / "strict", segmenter=ColourSegmenter())
    assert summary["dropped"] == len(hopeless) and summary["kept"] == 8 - len(hopeless)
    assert summary["per_class"]["car"] == {
        "maps": 8,
        "kept": 8 - len(hopeless),
        "dropped": len(hopeless),
        "drop_fraction": len(hopeless) / 8,
        "rectified_pixels": 0,
    }
    assert any("'car' lost" in w for w in summary["warnings"]) == (len(hopeless) / 8 > 0.2)
    kept_ids = {r["source_id"] for r in read_manifest(tmp_path / "strict")}
    assert kept_ids == set(ids) - set(hopeless)
    scores = read_manifest(tmp_path / "strict" / "filter")
    assert len(scores) == 8 and all(len(s["candidates"]) == K for s in scores)


def test_select_first_keeps_candidate_zero_and_still_drops_and_rectifies(tmp_path, source):
    painter = PainterGenerator(miss=0.7)
    cfg = config(tmp_path, source)
    generate_candidates(cfg, generator=painter)
    first = cfg.model_copy(update={"mcoc": cfg.mcoc.model_copy(update={"select": "first", "threshold": 0.9})})
    summary = filter_and_rectify(first, segmenter=ColourSegmenter())
    forgot = {f"scene{i}" for i in range(8) if painter.forgets(candidate_seed(cfg.seed, f"scene{i}", 0))}
    assert forgot and len(forgot) < 8, "the test needs both kinds of candidate 0"
    records = {r["source_id"]: r for r in read_manifest(cfg.out / "dataset")}
    assert set(records) == {f"scene{i}" for i in range(8)} - forgot  # judged by candidate 0's MCOC (0.75)
    assert summary["dropped"] == len(forgot)
    assert all(r["candidate"] == 0 and r["mcoc"] == 1.0 for r in records.values())
    # the same scores folder with another rule is refused, not mixed
    with pytest.raises(UrbangenError, match="other settings"):
        filter_and_rectify(cfg, out_dir=cfg.out / "dataset", segmenter=ColourSegmenter())


class BlindSegmenter(ColourSegmenter):
    """Never recognises buildings (calls them sky): a weak scoring segmenter, not a bad generator."""

    def predict(self, images):
        ids, conf = super().predict(images)
        ids[ids == BUILDING] = SKY
        return ids, conf


def test_class_relative_scores_ignore_what_the_segmenter_cannot_see_but_still_catch_forgotten_cars(tmp_path, source):
    painter = PainterGenerator(miss=0.4)
    cfg = config(tmp_path, source, seed=4)  # one map whose car no candidate drew, 6 of 24 candidates without car
    generate_candidates(cfg, generator=painter)
    mcoc = cfg.mcoc.model_copy(update={"threshold": 0.9})
    hopeless = {
        f"scene{i}"
        for i in range(8)
        if all(painter.forgets(candidate_seed(cfg.seed, f"scene{i}", k)) for k in range(K))
    }
    assert hopeless, "the test needs a map whose car no candidate drew"

    # absolute: the blind segmenter's buildings score 0, so every map falls under 0.9 and loses its buildings
    absolute = cfg.model_copy(update={"mcoc": mcoc})
    summary = filter_and_rectify(absolute, out_dir=tmp_path / "absolute", segmenter=BlindSegmenter())
    assert summary["kept"] == 0

    # relative: buildings (median consistency 0) are not judged; a forgotten car still is (median 1.0)
    relative = cfg.model_copy(update={"mcoc": mcoc.model_copy(update={"relative_to": "class"})})
    rectify_only = relative.model_copy(update={"mcoc": relative.mcoc.model_copy(update={"threshold": 0.0})})
    summary = filter_and_rectify(relative, out_dir=tmp_path / "relative", segmenter=BlindSegmenter())
    assert summary["class_reference"]["building"] == 0.0 and summary["class_reference"]["car"] == 1.0
    assert summary["kept"] == 8 - len(hopeless)
    assert any("'building'" in w and "not judged" in w for w in summary["warnings"])
    summary = filter_and_rectify(rectify_only, out_dir=tmp_path / "all", segmenter=BlindSegmenter())
    assert summary["kept"] == 8
    reader = open_dataset("cityscapes", tmp_path / "all")
    samples = {s.id: s for s in reader.index("train").samples}
    for record in read_manifest(tmp_path / "all"):
        scene = car_scene(int(record["source_id"][-1]))
        label = read_label(samples[record["id"]].label)
        assert (label[scene == BUILDING] == BUILDING).all()  # not withdrawn: the segmenter is blind to it
        assert (label[scene == CAR] == 255).all() == (record["source_id"] in hopeless)
        expected = 2 / 3 if record["source_id"] in hopeless else 1.0  # road, sky, car (buildings not judged)
        assert record["raw_mcoc"] < record["mcoc"] == pytest.approx(expected)


class LeftSightedSegmenter(ColourSegmenter):
    """Recognises buildings only left of column 10 (elsewhere it calls them sky): it sees a typical
    building only in part, and the buildings further right hardly at all."""

    def predict(self, images):
        ids, conf = super().predict(images)
        right = ids[:, :, 10:]
        right[right == BUILDING] = SKY
        return ids, conf


def test_rectify_min_reference_spares_objects_of_classes_the_segmenter_sees_poorly(tmp_path, source):
    cfg = config(tmp_path, source, seed=4)
    generate_candidates(cfg, generator=PainterGenerator(miss=0.4))
    relative = cfg.model_copy(update={"mcoc": cfg.mcoc.model_copy(update={"relative_to": "class", "threshold": 0.0})})

    def withdrawn(config, name):
        summary = filter_and_rectify(config, out_dir=tmp_path / name, segmenter=LeftSightedSegmenter())
        records = read_manifest(tmp_path / name)
        pixels = {c: sum(r["rectified_pixels"]["objects"].get(c, 0) for r in records) for c in ("building", "car")}
        return summary, pixels

    # default (mcoc.min_reference): the buildings the segmenter sees least of lose their labels
    summary, pixels = withdrawn(relative, "default")
    assert relative.mcoc.min_reference < summary["class_reference"]["building"] < 0.5
    assert pixels["building"] > 0 and pixels["car"] > 0
    # rectify.min_reference 0.5: buildings are no longer judged object by object; forgotten cars
    # (reference 1.0) still are
    strict = relative.model_copy(update={"rectify": relative.rectify.model_copy(update={"min_reference": 0.5})})
    _, strict_pixels = withdrawn(strict, "strict")
    assert strict_pixels == {"building": 0, "car": pixels["car"]}


def test_resume_rerenders_only_damaged_samples_and_matches_a_fresh_run(tmp_path, source):
    cfg = config(tmp_path, source)
    generate_candidates(cfg, generator=PainterGenerator())
    out = candidates_dir(cfg)
    (out / "samples" / "scene3" / "candidate_1.png").write_bytes(b"not a png")
    with open(out / "manifest.jsonl", "a") as handle:
        handle.write('{"id": "scene9", "lab')  # a torn append
    painter = PainterGenerator()
    summary = generate_candidates(cfg, generator=painter)
    assert painter.calls == 1 and summary["rendered"] == 1 and summary["skipped"] == 7
    fresh = config(tmp_path / "fresh", source)
    generate_candidates(fresh, generator=PainterGenerator())
    assert folder_bytes(out) == folder_bytes(candidates_dir(fresh))

    filter_and_rectify(cfg, segmenter=ColourSegmenter())
    dataset = cfg.out / "dataset"
    before = folder_bytes(dataset)
    victim = next((dataset / "leftImg8bit").rglob("*.png"))
    victim.unlink()
    filter_and_rectify(cfg, segmenter=ColourSegmenter())
    assert folder_bytes(dataset) == before


def test_changed_settings_are_refused(tmp_path, source):
    cfg = config(tmp_path, source)
    generate_candidates(cfg, generator=PainterGenerator())
    with pytest.raises(UrbangenError, match="seed"):
        generate_candidates(cfg.model_copy(update={"seed": 1}), generator=PainterGenerator())


def test_sharded_run_merges_to_the_unsharded_result(tmp_path, source):
    cfg = config(tmp_path, source, batch_size=5)
    dirs = [candidates_dir(cfg, (i, 3)) for i in range(3)]
    for i in range(3):
        generate_candidates(cfg, (i, 3), generator=PainterGenerator())
    with pytest.raises(UrbangenError, match=r"shards \[2\] of 3 are missing"):
        merge_shards(dirs[:2], tmp_path / "merged")
    partial = merge_shards(dirs[:2], tmp_path / "partial", allow_partial=True)
    assert partial["samples"] == 6 and partial["missing"] == []
    merged = merge_shards(dirs, tmp_path / "merged")
    assert merged["samples"] == 8
    whole = config(tmp_path / "whole", source, batch_size=1)
    generate_candidates(whole, generator=PainterGenerator())
    assert folder_bytes(tmp_path / "merged") == folder_bytes(candidates_dir(whole))
    other = config(tmp_path / "other", source, seed=5)
    generate_candidates(other, (2, 3), generator=PainterGenerator())
    with pytest.raises(UrbangenError, match="other settings"):
        merge_shards([*dirs[:2], candidates_dir(other, (2, 3))], tmp_path / "mixed")


def test_unfiltered_variant_keeps_candidate_zero_and_labels(tmp_path, source):
    cfg = config(tmp_path, source, filter=False)
    generate_candidates(cfg, generator=PainterGenerator())
    summary = filter_and_rectify(cfg)  # no segmenter needed
    assert summary["kept"] == 8 and not summary["filtered"]
    dataset = cfg.out / "dataset_nofilter"
    for record in read_manifest(dataset):
        assert record["candidate"] == 0 and record["mcoc"] is None
        i = int(record["source_id"][-1])
        assert (read_label(dataset / record["label"]) == car_scene(i)).all()
        image = candidates_dir(cfg) / "samples" / record["source_id"] / "candidate_0.png"
        assert (dataset / record["image"]).read_bytes() == image.read_bytes()


def test_bad_input_is_a_clear_error(tmp_path, source):
    with pytest.raises(UrbangenError, match=r"source\.root"):
        generate_candidates(config(tmp_path, tmp_path / "nowhere"), generator=PainterGenerator())
    bad = car_scene(0)
    bad[0, 0] = 40
    write_png(source / "scene9.png", bad)
    with pytest.raises(UrbangenError, match=r"scene9\.png.*\[40\]"):
        generate_candidates(config(tmp_path, source), generator=PainterGenerator())
    (source / "scene9.png").unlink()
    cfg = config(tmp_path / "x", source, filter=True)
    generate_candidates(cfg, generator=PainterGenerator())
    with pytest.raises(UrbangenError, match="segmenter"):
        filter_and_rectify(cfg)


class DepthRecorder(PainterGenerator):
    """Painter that keeps the depth it was given (test double)."""

    def generate(self, labels, seeds, depth=None, **kwargs):
        self.depth = depth
        return super().generate(labels, seeds, **kwargs)


def test_depth_reaches_the_generator_in_metres(tmp_path, source):
    depth_dir = tmp_path / "depth"
    for i in range(8):
        write_png(depth_dir / f"scene{i}.png", np.full((24, 40), 250 * (i + 1), np.uint16))
    src = SourceConfig(format="labels", root=source, depth_dir=depth_dir, use_depth=True)
    recorder = DepthRecorder()
    generate_candidates(config(tmp_path, source, source=src, batch_size=K), generator=recorder)
    assert recorder.depth.shape == (K, 24, 40) and np.allclose(recorder.depth, 2.5 * 8)  # the last map
    (depth_dir / "scene7.png").unlink()
    with pytest.raises(UrbangenError, match="scene7 has no depth map"):
        generate_candidates(config(tmp_path / "again", source, source=src), generator=DepthRecorder())


def test_cityscapes_source_objects_come_from_instance_maps(tmp_path, cityscapes_root):
    src = SourceConfig(format="cityscapes", root=cityscapes_root, split="train", limit=1)
    cfg = config(tmp_path, cityscapes_root, source=src, candidates=1, batch_size=1)
    generate_candidates(cfg, generator=PainterGenerator(miss=1.0))  # never draws cars
    (record,) = read_manifest(candidates_dir(cfg))
    instance = read_label(candidates_dir(cfg) / record["instance"])
    assert instance.max() >= 26000  # car instances, Cityscapes encoding, stored losslessly
    summary = filter_and_rectify(cfg, segmenter=ColourSegmenter())
    (kept,) = read_manifest(cfg.out / "dataset")
    label = read_label(cfg.out / "dataset" / kept["label"])
    cars = (instance >= 26000) & (instance < 27000)
    assert kept["per_class_consistency"]["car"] < 0.05 and (label[cars] == 255).mean() > 0.95
    assert kept["rectified_pixels"]["objects"]["car"] > 0 and summary["per_class"]["car"]["maps"] == 1
