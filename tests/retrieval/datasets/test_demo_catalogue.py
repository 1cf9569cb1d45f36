"""The demo catalogue builds offline from packaged assets and meets its size targets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from retrieval.catalogue import read_catalogue
from retrieval.datasets.demo_catalogue import build_demo_catalogue, main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("arcade") is None,
    reason="arcade (Kenney CC0 assets) is not installed: pip install --no-deps arcade",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_catalogue(tmp_path_factory.mktemp("demo"))


def test_targets_and_well_formed(built: Path) -> None:
    items, errors = read_catalogue(built)
    assert errors == []
    assert len(items) >= 150
    assert len({it.id for it in items}) == len(items)
    for it in items:
        assert it.title.strip(), it.id
        assert len(it.description) >= 80, it.id  # a real sentence, not a stub
        assert it.tags, it.id
        assert it.metadata.get("license") and it.metadata.get("source_package"), it.id
    assert sum(it.image is not None for it in items) >= 100
    assert sum(it.audio is not None for it in items) >= 30


def test_media_exist_and_decode(built: Path) -> None:
    import soundfile as sf
    from PIL import Image

    items, _ = read_catalogue(built)
    for it in items:
        if it.image:
            with Image.open(it.image) as img:
                img.load()
                assert (img.width, img.height) == (it.metadata["width"], it.metadata["height"])
        if it.audio:
            data, sr = sf.read(it.audio)
            assert len(data) > 0 and sr > 0
            assert it.metadata["duration_s"] == pytest.approx(len(data) / sr, abs=0.01)


def test_paths_are_relative_and_media_small(built: Path) -> None:
    rows = [json.loads(line) for line in built.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        for key in ("image", "audio"):
            if key in row:
                assert row[key].startswith("media/") and not Path(row[key]).is_absolute()
    media = list((built.parent / "media").iterdir())
    assert len(media) == len(rows)  # nothing stale or unreferenced
    assert sum(p.stat().st_size for p in built.parent.rglob("*") if p.is_file()) < 15_000_000


def test_deterministic_and_rebuild_in_place(built: Path, tmp_path: Path) -> None:
    again = build_demo_catalogue(tmp_path / "second")
    assert again.read_bytes() == built.read_bytes()
    (again.parent / "media" / "stale.png").write_bytes(b"x")
    assert build_demo_catalogue(again.parent).read_bytes() == built.read_bytes()
    assert not (again.parent / "media" / "stale.png").exists()


def test_cli(tmp_path: Path) -> None:
    assert main([str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "catalogue.jsonl").is_file()
