"""Media demo catalogue: rcc reader, row builders, audio measurements, personas, and the
withheld benchmark labels (they must not reach any field the system reads)."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from retrieval.datasets.media import build, fetch, personas, sources
from retrieval.datasets.media.rcc import FLAG_COMPRESSED, FLAG_DIRECTORY, RccError, RccFile
from retrieval.encoders.audio_features import measure

# ---------------------------------------------------------------- a tiny .rcc writer


def write_rcc(files: dict[str, bytes], *, compress: bool = True, version: int = 2) -> bytes:
    """Build a `.rcc` image from {path: bytes} with Qt's layout (children contiguous)."""
    root: dict = {}
    for path, blob in files.items():
        parts = [p for p in path.split("/") if p]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = blob
    names = bytearray()
    offsets: dict[str, int] = {}

    def name_off(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(names)
            names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return offsets[name]

    pad = b"" if version == 1 else b"\0" * 8
    payload = bytearray()
    nodes: list[bytes] = [b""]
    queue: list[tuple[int, int, dict]] = [(0, 0, root)]
    while queue:
        index, noff, tree = queue.pop(0)
        children = sorted(tree.items())
        first = len(nodes)
        nodes[index] = struct.pack(">IHII", noff, FLAG_DIRECTORY, len(children), first) + pad
        nodes.extend(b"" for _ in children)
        for i, (name, sub) in enumerate(children):
            if isinstance(sub, dict):
                queue.append((first + i, name_off(name), sub))
                continue
            data = struct.pack(">I", len(sub)) + zlib.compress(sub) if compress else sub
            flags = FLAG_COMPRESSED if compress else 0
            nodes[first + i] = struct.pack(">IHHHI", name_off(name), flags, 0, 0, len(payload))
            nodes[first + i] += pad
            payload.extend(struct.pack(">I", len(data)) + data)
    tree_blob = b"".join(nodes)
    head = 20 if version < 3 else 24
    offs = (head, head + len(tree_blob), head + len(tree_blob) + len(payload))
    header = b"qres" + struct.pack(">IIII", version, *offs)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree_blob + bytes(payload) + bytes(names)


FILES = {
    "gcompris/src/activities/demo/resource/cat.ogg": b"OggS" + bytes(range(200)),
    "gcompris/src/activities/demo/resource/board/board1.qml": b"QtObject {}",
    "gcompris/src/activities/demo/README": b"Copyright: someone\nLicense: CC0\nFiles:\ncat.ogg\n",
}


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("compress", [True, False])
def test_rcc_reads_names_and_bytes(version: int, compress: bool) -> None:
    rcc = RccFile(write_rcc(FILES, compress=compress, version=version))
    assert rcc.names() == sorted(FILES)
    for path, blob in FILES.items():
        assert rcc.read(path) == blob
    assert "gcompris/src/activities/demo/resource" not in rcc  # directories are not entries


def test_rcc_refuses_bad_input() -> None:
    with pytest.raises(RccError, match="qres"):
        RccFile(b"not a resource file at all")
    good = write_rcc(FILES)
    with pytest.raises(RccError, match="version"):
        RccFile(good[:4] + struct.pack(">I", 9) + good[8:])
    rcc = RccFile(good)
    with pytest.raises(RccError, match="no entry"):
        rcc.read("missing.txt")


def test_rcc_refuses_absurd_and_corrupt_sizes() -> None:
    blob = b"x" * 1000
    data = bytearray(write_rcc({"a/big.bin": blob}))
    data_off = struct.unpack(">I", data[12:16])[0]
    # the compressed entry claims 4 GB uncompressed: refused before inflating
    data[data_off + 4 : data_off + 8] = struct.pack(">I", 0xFFFFFFF0)
    with pytest.raises(RccError, match="refused"):
        RccFile(bytes(data)).read("a/big.bin")
    # the length prefix claims more bytes than the file has
    data = bytearray(write_rcc({"a/big.bin": blob}))
    data[data_off : data_off + 4] = struct.pack(">I", 10_000_000)
    with pytest.raises(RccError, match="refused"):
        RccFile(bytes(data)).read("a/big.bin")
    # a wrong uncompressed size is caught after inflating
    data = bytearray(write_rcc({"a/big.bin": blob}))
    data[data_off + 4 : data_off + 8] = struct.pack(">I", 999)
    with pytest.raises(RccError, match="inflates"):
        RccFile(bytes(data)).read("a/big.bin")
    # garbage instead of a zlib stream
    data = bytearray(write_rcc({"a/big.bin": blob}))
    data[data_off + 8 : data_off + 12] = b"\xff\xff\xff\xff"
    with pytest.raises(RccError, match="corrupt"):
        RccFile(bytes(data)).read("a/big.bin")


def test_rcc_refuses_cyclic_tree() -> None:
    data = bytearray(write_rcc({"a/b.txt": b"hi"}))
    tree = struct.unpack(">I", data[8:12])[0]
    # make directory "a" (node 1) list the root (node 0) as its first child: a cycle
    data[tree + 22 + 10 : tree + 22 + 14] = struct.pack(">I", 0)
    with pytest.raises(RccError, match="cyclic|too large"):
        RccFile(bytes(data))


# ---------------------------------------------------------------- GCompris text


QML = """
QtObject {
    property var tab : [
        {
            "image": "qrc:/gcompris/src/activities/x/resource/animals/cow.svg",
            "title": qsTr("Cow"),
            "text": qsTr("The cow goes 'moo'. It says \\"moo\\"."),
            "audio": GCompris.ApplicationInfo.getAudioFilePath("qrc:/x/animals/cow.$CA"),
            "x": 0.43
        },
        { "title": qsTr("Pig"), "text": qsTr("The pig goes 'oink'.") }
    ]
}
"""


def test_qml_entries_and_readme_credits() -> None:
    entries = sources.qml_entries(QML)
    assert [e["title"] for e in entries] == ["Cow", "Pig"]
    assert entries[0]["text"] == "The cow goes 'moo'. It says \"moo\"."
    assert entries[0]["audio"].endswith("cow.$CA")
    credits = sources.readme_credits(
        "Copyright: Ann\nLicense: CC0-1.0\nSource: https://x/y.jpg\nFiles:\ncow.webp\n\n"
        "Copyright: Bob\nLicense: GPLv3\nFiles:\ncow.ogg\npig.ogg\n"
    )
    assert credits["cow.webp"] == {
        "copyright": "Ann",
        "license": "CC0-1.0",
        "source": "https://x/y.jpg",
    }
    assert credits["pig.ogg"]["license"] == "GPLv3"


# ---------------------------------------------------------------- fixture packages


def _png(path: Path, colour: tuple[int, int, int, int] = (200, 40, 40, 255)) -> None:
    from PIL import Image

    img = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (30, 30), colour), (10, 10))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _ogg(path: Path, seconds: float = 1.0, bpm: float | None = None) -> None:
    import soundfile as sf

    rate = 22_050
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * np.sin(2 * np.pi * 440 * t)
    if bpm:
        x = np.zeros_like(t)
        for beat in np.arange(0, seconds, 60.0 / bpm):
            i = int(beat * rate)
            x[i : i + 400] += 0.8 * np.exp(-np.arange(len(x[i : i + 400])) / 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), rate, format="OGG", subtype="VORBIS")


def _tuxpaint(root: Path) -> None:
    base = root / sources.TUXPAINT_STAMPS
    _png(base / "animals/marsupials/koala.png")
    (base / "animals/marsupials/koala.txt").write_text("A koala.\nde.utf8=Ein Koala.\n")
    _ogg(base / "animals/marsupials/koala.ogg")
    _ogg(base / "animals/marsupials/koala_desc.ogg")  # spoken description: not its sound
    _png(base / "space/rocket.png")
    (base / "space/rocket.txt").write_text("A rocket taking off.\n")
    _png(base / "animals/cartoon/snail.png")
    (base / "animals/cartoon/snail.txt").write_text("A happy snail.\n")
    _png(base / "symbols/alphabets/english/a.png")  # skipped folder
    (base / "symbols/alphabets/english/a.txt").write_text("The letter A.\n")


LICENSE_MUSIC = """Tracks are grouped by mood.

calm/
  calm_acoustic_1.opus                 68 bpm  C major   seed 101  [acoustic]

energetic/
  energetic_electronic_2.opus         150 bpm  G minor   seed 202  [electronic]
"""


def _immich(root: Path) -> None:
    _ogg(root / sources.IMMICH_TRACKS / "calm/calm_acoustic_1.opus", 8.0, bpm=68)
    _ogg(root / sources.IMMICH_TRACKS / "energetic/energetic_electronic_2.opus", 8.0, bpm=150)
    lic = root / "immich_memories_music-0.1.0.dist-info/licenses/LICENSE-MUSIC"
    lic.parent.mkdir(parents=True)
    lic.write_text(LICENSE_MUSIC)


def test_tuxpaint_rows(tmp_path: Path) -> None:
    _tuxpaint(tmp_path)
    rows = {r.id: r for r in sources.tuxpaint_rows(tmp_path, package="tp 1")}
    assert set(rows) == {"stamp-koala", "stamp-rocket", "stamp-snail"}
    koala = rows["stamp-koala"]
    assert koala.title == "Koala"
    assert koala.description.startswith("A koala.")
    assert koala.audio is not None and koala.audio.path.name == "koala.ogg"
    assert koala.labels == {
        "source": "tuxpaint",
        "category": "animals",
        "subcategory": "marsupials",
    }
    assert rows["stamp-rocket"].title == "Rocket taking off"
    assert rows["stamp-rocket"].audio is None
    assert "cartoon" in rows["stamp-snail"].tags


def test_immich_rows_hide_mood_bpm_and_key(tmp_path: Path) -> None:
    _immich(tmp_path)
    rows = sources.immich_rows(tmp_path, package="imm 0.1.0")
    assert {r.labels["mood"] for r in rows} == {"calm", "energetic"}
    assert {r.labels["bpm"] for r in rows} == {68, 150}
    for r in rows:
        visible = json.dumps([r.id, r.title, r.description, r.tags, r.metadata]).lower()
        for value in (r.labels["mood"], str(r.labels["bpm"]), r.labels["key"].lower()):
            assert value not in visible


def test_build_withholds_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end on fixture packages: no withheld label value in any field the system reads,
    nor in a media file name; the labels file holds them all."""
    pkgs = tmp_path / "pkgs"
    _tuxpaint(pkgs / "tp")
    _immich(pkgs / "imm")
    monkeypatch.setattr(
        fetch,
        "fetch_all",
        lambda cache=None: {
            "tuxpaint-stamps-default": pkgs / "tp",
            "immich-memories-music": pkgs / "imm",
        },
    )
    out = tmp_path / "demo"
    report = build.build_media_catalogue(out, moods=False)
    assert report.items >= 5 and report.multimodal >= 1
    rows = [json.loads(line) for line in (out / "catalogue.jsonl").read_text().splitlines()]
    labels = json.loads((out / "benchmark_labels.json").read_text())
    assert set(labels) == {r["id"] for r in rows}
    for row in rows:
        lab = labels[row["id"]]
        assert not set(row) & {"labels", "category", "mood", "bpm", "key"}
        visible = json.dumps(row, ensure_ascii=False).lower()
        files = " ".join(Path(row.get(k) or "").name for k in ("image", "audio")).lower()
        if lab["source"] == "immich":
            for word in ("calm", "energetic", "happy", "tender", "nostalgic"):
                assert not re.search(rf"\b{word}\b", visible), (word, row)
            assert f" {lab['bpm']} bpm" not in visible and lab["key"].lower() not in visible
            assert "excerpt" not in row["metadata"]  # 8 s clips are kept whole
            assert row["metadata"]["tempo_bpm"] > 0  # measured, and allowed
        if lab["source"] == "tuxpaint":
            for value in (lab["category"], *lab["subcategory"].split("/")):
                if value:
                    assert value not in files and value not in row["id"]
                    assert value not in json.dumps([row["tags"], row["metadata"]]).lower()
    # media are converted and only the used ones are kept
    names = sorted(p.name for p in (out / "media").iterdir())
    assert names == sorted(Path(r[k]).name for r in rows for k in ("image", "audio") if r.get(k))
    from PIL import Image

    with Image.open(out / "media" / "stamp-koala.png") as img:
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)  # flattened on white
    # a cached rebuild converts nothing
    again = build.build_media_catalogue(out, moods=False)
    assert again.converted == 0 and again.reused == report.converted + report.reused
    assert (out / "catalogue.jsonl").read_text().splitlines() == [
        json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows
    ]


# ---------------------------------------------------------------- audio measurements


def test_tempo_of_a_click_track() -> None:
    rate = 22_050
    for bpm in (72.0, 120.0):
        x = np.zeros(int(20 * rate))
        for beat in np.arange(0, 20, 60 / bpm):
            i = int(beat * rate)
            x[i : i + 300] = 0.9 * np.exp(-np.arange(300) / 50)
        f = measure(x, rate)
        assert f.tempo_bpm is not None and abs(f.tempo_bpm - bpm) < 3, (bpm, f)
        assert f.onset_rate == pytest.approx(bpm / 60, rel=0.2)
    short = measure(np.full(2000, 0.1), rate)
    assert short.tempo_bpm is None and "slow tempo" not in short.words()
    assert measure(np.full(rate, 0.5), rate).loudness_dbfs == pytest.approx(-6.02, abs=0.01)
    with pytest.raises(ValueError):
        measure(np.zeros(0), rate)


def test_a_silent_placeholder_sound_is_left_out_and_a_real_one_kept(tmp_path: Path) -> None:
    """Tux Paint ships pure silence for a few stamps: no silent player is offered."""
    import io

    import soundfile as sf

    from retrieval.datasets.media.build import convert_audio
    from retrieval.datasets.media.sources import MediaBlob

    def wav(x: np.ndarray) -> MediaBlob:
        buf = io.BytesIO()
        sf.write(buf, x.astype(np.float32), 32_000, format="WAV")
        return MediaBlob(".wav", read=buf.getvalue)

    with pytest.raises(ValueError, match="all silent"):
        convert_audio(wav(np.zeros(32_000)), tmp_path / "quiet", music=False)
    assert not (tmp_path / "quiet.ogg").exists()
    t = np.arange(32_000) / 32_000
    dest, meta = convert_audio(wav(0.3 * np.sin(2 * np.pi * 440 * t)), tmp_path / "a", music=False)
    assert dest.is_file() and meta["duration_s"] == pytest.approx(1.0, abs=0.01)


# ---------------------------------------------------------------- personas


def test_personas_are_deterministic_and_follow_their_rules(tmp_path: Path) -> None:
    labels = {
        f"s{i}": {"source": "tuxpaint", "category": c}
        for i, c in enumerate(
            ["plants"] * 5 + ["space"] * 6 + ["vehicles"] * 5 + ["food"] * 4 + ["animals"] * 4
        )
    }
    labels |= {
        f"t{m}{i}": {"source": "immich", "mood": m}
        for m in ("calm", "energetic", "tender", "happy")
        for i in range(3)
    }
    a, b = personas.make_personas(labels), personas.make_personas(labels)
    assert a == b
    leo = next(p for p in a if p.id == "leo")
    assert sum(labels[i]["category"] == "space" for i in leo.liked) == 4
    assert all(labels[i].get("category") != "plants" for i in leo.liked)
    every = [i for p in a for i in (*p.liked, *p.disliked)]
    assert len(every) == len(set(every))  # no item in two histories, nor liked and disliked
    personas.write_personas(tmp_path, labels)
    (tmp_path / "catalogue.jsonl").write_text("")
    shown = personas.persona_labels(tmp_path / "catalogue.jsonl")
    assert shown["maya"] == "Maya — calm music & nature (demo persona)"
    assert personas.persona_labels(None) == {} and personas.persona_labels(tmp_path / "x/y") == {}
    csv_lines = (tmp_path / "interactions.csv").read_text().splitlines()
    assert csv_lines[0] == "user_id,item_id,rating,timestamp" and len(csv_lines) > 20


# ---------------------------------------------------------------- fetch


def test_fetch_uses_the_cache_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = fetch.Package("some-media", "1:2.0-1", "deb", "GPL")
    done = tmp_path / pkg.key
    done.mkdir()
    (done / ".complete").write_text("ok")
    assert fetch.fetch_package(pkg, tmp_path) == done  # nothing run on a cache hit

    class Failed:
        returncode, stdout, stderr = 100, "", "E: Unable to locate package other-media"

    monkeypatch.setattr(fetch, "_run", lambda cmd, cwd: Failed())
    monkeypatch.setattr(fetch.shutil, "which", lambda name: f"/usr/bin/{name}")
    other = fetch.Package("other-media", "1.0", "deb", "GPL")
    with pytest.raises(fetch.FetchError, match="apt-get update"):
        fetch.fetch_package(other, tmp_path)
    assert not (tmp_path / other.key).exists()  # nothing half-written
    opt = fetch.Package("other-media", "1.0", "deb", "GPL", optional=True)
    assert fetch.fetch_all(tmp_path, (opt,)) == {}


# ---------------------------------------------------------------- request benchmark judging


def test_benchmark_judging_and_withheld_check() -> None:
    from types import SimpleNamespace

    from bench import requests as rb

    labels = {
        "a": {"source": "tuxpaint", "category": "animals", "subcategory": "insects"},
        "b": {"source": "tuxpaint", "category": "animals", "subcategory": "birds"},
        "c": {"source": "tuxpaint", "category": "food", "subcategory": ""},
        "t1": {"source": "immich", "mood": "calm", "bpm": 68, "key": "C major"},
        "t2": {"source": "immich", "mood": "energetic", "bpm": 150, "key": "G minor"},
    }
    has = {i: {"image": True, "audio": i.startswith("t")} for i in labels}
    req = rb.BenchRequest(
        "x",
        "animals, no insects",
        "image",
        "exclusion",
        "category",
        {"animals": 2, "animals/insects": 0},
        never=("animals/insects",),
    )
    assert rb.gain(req, labels["b"], has["b"]) == 2 and rb.gain(req, labels["a"], has["a"]) == 0
    row = rb.judge(req, ["x-unjudged", "a", "b", "c"], labels, has, seen=set())
    assert row["violations@10"] == 1 and row["p@5"] == pytest.approx(1 / 5)
    assert row["raw_p@5"] == pytest.approx(1 / 5) and 0 < row["ndcg@10"] < 1
    perfect = rb.judge(req, ["b", "a"], labels, has, seen=set())
    assert perfect["ndcg@10"] == pytest.approx(1.0)
    calm = rb.BenchRequest("y", "calm", "audio", "mood", "mood", {"calm": 2}, never=("energetic",))
    assert rb.judge(calm, ["t2", "t1"], labels, has, set())["violations@10"] == 1
    d = rb.paired_bootstrap([1.0, 1.0, 0.0], [0.0, 0.0, 0.0], n=500)
    assert d["diff"] == pytest.approx(2 / 3, abs=1e-4) and d["ci95"][0] <= d["diff"] <= d["ci95"][1]

    def item(i: str, **kw: object) -> SimpleNamespace:
        base = {"id": i, "title": "T", "description": "", "tags": (), "metadata": {}}
        return SimpleNamespace(**(base | {"image": None, "audio": None} | kw))

    items = {i: item(i) for i in labels}
    rb.check_withheld(items, labels)  # nothing visible: passes
    items["t1"] = item("t1", tags=("calm",))
    with pytest.raises(AssertionError, match="calm"):
        rb.check_withheld(items, labels)
    items["t1"] = item("t1", tags=("tender music",), metadata={"yamnet_moods": {"x": 1}})
    rb.check_withheld(items, labels)  # YAMNet's measured mood classes are allowed
    items["a"] = item("a", metadata={"folder": "insects"})
    with pytest.raises(AssertionError, match="insects"):
        rb.check_withheld(items, labels)


def test_demo_configs_parse(tmp_path: Path) -> None:
    from retrieval.config import FusionrecConfig
    from retrieval.datasets.media import demo

    media = tmp_path / "fusionrec.toml"
    media.write_text(demo.media_config_text(tmp_path / 'a "quoted" dir'))
    cfg = FusionrecConfig.from_toml(media)
    assert cfg.data.items.endswith('a "quoted" dir/catalogue.jsonl')
    assert cfg.hybrid.weights["popularity"] == 0.0 and cfg.hybrid.weights["query"] == 1.0
    # a persona's 1-rated dislike pushes its profile away, not towards it
    from retrieval.profiles import History, profile_weights

    history = History(["liked", "disliked"], [5.0, 1.0])
    _, w = profile_weights(history, like_threshold=cfg.hybrid.content_like_threshold)
    assert w[0] > 0 > w[1]
    ml = tmp_path / "ml.toml"
    ml.write_text(demo.movielens_config_text(tmp_path))
    cfg = FusionrecConfig.from_toml(ml)
    assert cfg.data.interactions == "ml-100k" and "movielens" in cfg.store.path
