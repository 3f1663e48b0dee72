"""Core pieces: the official label table, strict configs, atomic writes, strict reads, the CLI shell."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import Field

from urbangen import __version__, labels
from urbangen.cli import main
from urbangen.config import StrictModel, load_config
from urbangen.errors import UrbangenError
from urbangen.io import atomic_path, read_label, read_rgb, write_png


def test_cityscapes19_comes_from_the_official_table():
    from cityscapesscripts.helpers.labels import trainId2label

    tax = labels.cityscapes19()
    assert tax.num_classes == 19
    assert tax.classes[0] == "road" and tax.classes[18] == "bicycle"
    assert tax.colors[13] == tuple(trainId2label[13].color)


def test_cityscapes_label_ids_mapping_matches_table():
    from cityscapesscripts.helpers.labels import labels as table

    mapping = labels.cityscapes_label_ids()
    ids = np.array([lab.id for lab in table if lab.id >= 0])
    expected = np.array([lab.trainId if 0 <= lab.trainId < 255 else 255 for lab in table if lab.id >= 0])
    assert (mapping.apply(ids[None, :])[0] == expected).all()


def test_unknown_ids_error_or_ignore_with_count():
    mapping = labels.cityscapes_label_ids()
    label = np.array([[7, 8, 200]], dtype=np.uint8)
    with pytest.raises(UrbangenError, match=r"200"):
        mapping.apply(label, source_path="x.png")
    mapped, count = mapping.apply_counted(label, unknown="ignore")
    assert mapped.tolist() == [[0, 1, 255]] and count == 1


def test_taxonomy_check_names_bad_values():
    with pytest.raises(UrbangenError, match=r"\[19\]"):
        labels.cityscapes19().check(np.array([0, 19, 255]), "pred.png")


class _Cfg(StrictModel):
    steps: int = Field(gt=0)
    name: str = "x"


def test_config_errors_name_file_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\nstepz: 4\n")
    with pytest.raises(UrbangenError, match=r"c.yaml[\s\S]*stepz: unknown field"):
        load_config(_Cfg, path)
    path.write_text("steps: -1\n")
    with pytest.raises(UrbangenError, match=r"steps"):
        load_config(_Cfg, path)
    path.write_text("steps: 2\n")
    assert load_config(_Cfg, path).steps == 2


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_png_roundtrip_and_corrupt_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    assert (read_rgb(tmp_path / "a.png") == rgb).all()
    deep = np.array([[0, 65535]], dtype=np.uint16)
    write_png(tmp_path / "d.png", deep)
    assert read_label(tmp_path / "d.png").tolist() == [[0, 65535]]
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UrbangenError, match=r"bad\.png"):
        read_rgb(tmp_path / "bad.png")


def test_cli_version_and_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "world" in result.output and "evaluate" in result.output
