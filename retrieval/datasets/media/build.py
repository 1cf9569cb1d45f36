"""Build the media demo catalogue: fetch packages, convert media, measure audio, write files.

Outputs in `out_dir`:
- `catalogue.jsonl`: what the system reads (title, description, tags, image, audio, metadata).
- `media/`: only the files the catalogue uses, converted for browsers and encoders
  (drawings flattened onto white PNG, SVG rendered, photos as JPEG, sounds as Ogg Vorbis,
  long music cut to an excerpt).
- `benchmark_labels.json`: the withheld labels (stamp folder, track mood, BPM, key), read only
  by the request benchmark; `tests/retrieval/datasets/test_media.py` checks they do not leak.
- `personas.json` + `interactions.csv`: the demo personas and their seeded histories.

Rebuilds are cached: a converted file is reused while its source key (package version +
converter version) is unchanged, and so are its audio measurements.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.datasets.media import fetch, sources
from retrieval.datasets.media.sources import MediaBlob, MediaRow
from retrieval.errors import FusionrecError, MissingDependencyError

logger = logging.getLogger(__name__)

CONVERTER_VERSION = "3"  # bump when conversion changes, to redo cached media (3: silence)
MAX_IMAGE_SIDE = 512  # longest side of a converted image (pixels)
MUSIC_EXCERPT_S = 60.0  # music longer than MUSIC_KEEP_WHOLE_S is cut to this long an excerpt
MUSIC_KEEP_WHOLE_S = 75.0
MUSIC_EXCERPT_START = 0.2  # the excerpt starts this far into the track (skips quiet intros)
MAX_SOUND_S = 30.0  # other sounds are cut to this many seconds
AUDIO_RATE = 32_000  # output sample rate (Hz) of converted audio
FEATURE_RATE = 22_050  # rate the tempo/loudness measurement runs at
MOOD_CLASSES = (  # YAMNet's AudioSet music-mood classes
    "Happy music",
    "Tender music",
    "Sad music",
    "Exciting music",
    "Angry music",
    "Scary music",
)
MOOD_SHARE_TAG = 0.35  # a mood class with this share of the six moods' probability is tagged
BUILD_STATE = ".media-build.json"
WRITE_BLOCK = 16_384  # frames per Ogg Vorbis write call


@dataclass
class BuildReport:
    """Counts and timings of one build (docs/demo.md cites them)."""

    items: int = 0
    with_image: int = 0
    with_audio: int = 0
    music_or_ambient: int = 0
    multimodal: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    converted: int = 0
    reused: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- conversion


def _flatten(img: Any) -> Any:
    """RGBA/LA/P with transparency -> RGB on white (the image encoder expects no alpha)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def convert_image(blob: MediaBlob, dest_stem: Path) -> Path:
    """Write `dest_stem`.png (drawings) or .jpg (photos) and return the path."""
    from PIL import Image

    data = blob.data()
    if blob.suffix.lower() == ".svg":
        try:
            import cairosvg
        except ImportError as e:
            raise MissingDependencyError("SVG stamps need cairosvg: pip install cairosvg") from e
        data = cairosvg.svg2png(bytestring=data, output_width=MAX_IMAGE_SIDE)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        photo = img.format in ("JPEG", "WEBP") and img.mode != "RGBA"
        out = _flatten(img)
    out.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    dest = dest_stem.with_suffix(".jpg" if photo else ".png")
    if photo:
        out.save(dest, "JPEG", quality=88)
    else:
        out.save(dest, "PNG", optimize=True)
    return dest


def _decode(blob: MediaBlob) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(io.BytesIO(blob.data()), dtype="float32", always_2d=True)
    return data, int(rate)


def convert_audio(blob: MediaBlob, dest_stem: Path, *, music: bool) -> tuple[Path, dict[str, Any]]:
    """Write `dest_stem`.ogg (an excerpt for long music) and measure it."""
    import soundfile as sf
    from scipy.signal import resample_poly

    from retrieval.encoders.audio import SILENCE_PEAK
    from retrieval.encoders.audio_features import measure

    data, rate = _decode(blob)
    # a package's placeholder sound (Tux Paint ships four stamps with pure silence) is no
    # sound to offer: the item keeps its picture, and no silent player is shown
    if not data.size or float(np.abs(data).max()) < SILENCE_PEAK:
        raise ValueError("all silent (peak below -80 dBFS)")
    total = data.shape[0] / rate
    start, length = 0.0, MAX_SOUND_S
    if music:
        length = total if total <= MUSIC_KEEP_WHOLE_S else MUSIC_EXCERPT_S
        start = 0.0 if total <= MUSIC_KEEP_WHOLE_S else MUSIC_EXCERPT_START * total
        start = min(start, max(0.0, total - length))
    clip = data[int(start * rate) : int((start + length) * rate)]
    if clip.shape[1] > 2:
        clip = clip[:, :2]
    if rate != AUDIO_RATE:
        from math import gcd

        g = gcd(rate, AUDIO_RATE)
        clip = resample_poly(clip, AUDIO_RATE // g, rate // g, axis=0).astype(np.float32)
    clip = np.clip(clip, -1.0, 1.0)
    dest = dest_stem.with_suffix(".ogg")
    # Written in blocks: libsndfile's Vorbis encoder crashes on one long write (seen at 60 s).
    with sf.SoundFile(
        str(dest), "w", AUDIO_RATE, clip.shape[1], format="OGG", subtype="VORBIS"
    ) as fh:
        for i in range(0, clip.shape[0], WRITE_BLOCK):
            fh.write(clip[i : i + WRITE_BLOCK])
    mono = clip.mean(axis=1)
    g = np.gcd(AUDIO_RATE, FEATURE_RATE)
    feats = measure(resample_poly(mono, FEATURE_RATE // g, AUDIO_RATE // g), FEATURE_RATE)
    meta = feats.to_metadata()
    meta["duration_s"] = round(clip.shape[0] / AUDIO_RATE, 2)
    if music and total > length:
        meta["excerpt"] = f"{length:.0f} s from {start:.0f} s of {total:.0f} s"
    meta["measured_words"] = feats.words()
    return dest, meta


def yamnet_moods(paths: list[Path]) -> list[dict[str, float]]:
    """Share of each YAMNet music-mood class among the six, per clip (sums to 1)."""
    from retrieval.encoders import create_encoder
    from retrieval.encoders.audio import YAMNET_SR, load_audio

    enc = create_encoder("yamnet", num_threads=2)
    labels = list(enc.labels)
    idx = [labels.index(m) for m in MOOD_CLASSES]
    out: list[dict[str, float]] = []
    for start in range(0, len(paths), 8):
        clips = [(load_audio(p), YAMNET_SR) for p in paths[start : start + 8]]
        _, probs = enc.encode_with_labels(clips)
        for row in probs:
            m = np.asarray([row[i] for i in idx], dtype=np.float64)
            share = m / max(m.sum(), 1e-12)
            out.append({c: round(float(s), 3) for c, s in zip(MOOD_CLASSES, share, strict=True)})
    return out


# ---------------------------------------------------------------- build


def collect_rows(paths: dict[str, Path]) -> list[MediaRow]:
    """Rows from every fetched package (missing optional ones are simply absent)."""
    rows: list[MediaRow] = []
    label = {p.name: p.label for p in fetch.PACKAGES}
    if "tuxpaint-stamps-default" in paths:
        rows += sources.tuxpaint_rows(
            paths["tuxpaint-stamps-default"], package=label["tuxpaint-stamps-default"]
        )
    if "gcompris-qt-data" in paths:
        rows += sources.gcompris_rows(paths["gcompris-qt-data"], package=label["gcompris-qt-data"])
    if "immich-memories-music" in paths:
        rows += sources.immich_rows(
            paths["immich-memories-music"], package=label["immich-memories-music"]
        )
    if "wesnoth-1.16-music" in paths:
        rows += sources.tagged_music_rows(
            paths["wesnoth-1.16-music"],
            package=label["wesnoth-1.16-music"],
            folder=sources.WESNOTH_MUSIC,
            prefix="wesnoth",
            license="GPL-2.0-or-later",
            collection="The Battle for Wesnoth soundtrack",
        )
    if "singularity-music" in paths:
        rows += sources.tagged_music_rows(
            paths["singularity-music"],
            package=label["singularity-music"],
            folder=sources.SINGULARITY_MUSIC,
            prefix="singularity",
            license="CC-BY-SA-3.0",
            collection="Endgame: Singularity soundtrack",
        )
    import importlib.metadata

    try:
        skv = importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        skv = "unknown"
    rows += sources.skimage_rows(package=f"scikit-image {skv} (PyPI)")
    ids = [r.id for r in rows]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise FusionrecError(f"duplicate media ids: {', '.join(dup[:5])}")
    return rows


def _source_key(row: MediaRow, which: str) -> str:
    blob = row.image if which == "image" else row.audio
    assert blob is not None
    return f"{CONVERTER_VERSION}|{row.metadata.get('source_package')}|{row.id}|{blob.suffix}"


def build_media_catalogue(
    out_dir: str | Path,
    *,
    cache: Path | None = None,
    moods: bool = True,
    select: Callable[[list[MediaRow]], list[MediaRow]] | None = None,
) -> BuildReport:
    """Fetch (cached), convert, measure and write the catalogue files into `out_dir`.

    Args:
        out_dir: demo folder; `media/` inside it is pruned to the files in use.
        cache: package cache (default `fetch.default_cache()`).
        moods: run YAMNet over music to tag its mood classes (needs the packaged model).
        select: keeps a subset of the rows before any conversion (a small catalogue for the
            browser test, same conversion and personas); None keeps every row.

    Raises:
        FetchError: a required package could not be fetched.
    """
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    paths = fetch.fetch_all(cache)
    report.seconds["fetch"] = round(time.perf_counter() - t0, 1)
    rows = collect_rows(paths)
    if select is not None:
        rows = select(rows)
    state_path = out / BUILD_STATE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError):
        state = {}
    new_state: dict[str, Any] = {}
    t1 = time.perf_counter()
    records: list[dict[str, Any]] = []
    mood_todo: list[tuple[int, Path]] = []
    for row in rows:
        rec: dict[str, Any] = {
            "id": row.id,
            "title": row.title,
            "description": row.description,
            "tags": list(row.tags),
            "metadata": dict(row.metadata),
        }
        for which in ("image", "audio"):
            blob = row.image if which == "image" else row.audio
            if blob is None:
                continue
            key = f"{row.id}:{which}"
            skey = _source_key(row, which)
            prev = state.get(key)
            try:
                if prev and prev.get("source_key") == skey and (media / prev["file"]).is_file():
                    entry = prev
                    report.reused += 1
                elif which == "image":
                    dest = convert_image(blob, media / row.id)
                    entry = {"source_key": skey, "file": dest.name, "meta": {}}
                    report.converted += 1
                else:
                    dest, meta = convert_audio(blob, media / row.id, music=row.music)
                    entry = {"source_key": skey, "file": dest.name, "meta": meta}
                    report.converted += 1
            except (OSError, ValueError, RuntimeError) as e:
                logger.warning("%s: %s left out (%s)", row.id, which, e)
                continue
            new_state[key] = entry
            rec[which] = f"media/{entry['file']}"
            rec["metadata"].update({k: v for k, v in entry["meta"].items() if k != "moods"})
            if which == "audio" and row.music:
                if "moods" in entry["meta"]:
                    rec["metadata"]["yamnet_moods"] = entry["meta"]["moods"]
                elif moods:
                    mood_todo.append((len(records), media / entry["file"]))
        if not rec.get("image") and not rec.get("audio"):
            continue
        records.append(rec)
        row_labels = row.labels
        rec["__labels__"] = row_labels
    report.seconds["convert"] = round(time.perf_counter() - t1, 1)
    if mood_todo:
        t2 = time.perf_counter()
        shares = yamnet_moods([p for _, p in mood_todo])
        for (i, _), share in zip(mood_todo, shares, strict=True):
            records[i]["metadata"]["yamnet_moods"] = share
            new_state[f"{records[i]['id']}:audio"]["meta"]["moods"] = share
        report.seconds["yamnet_moods"] = round(time.perf_counter() - t2, 1)
    labels: dict[str, Any] = {}
    lines = []
    for rec in records:
        labels[rec["id"]] = rec.pop("__labels__")
        meta = rec["metadata"]
        words = list(meta.pop("measured_words", []))
        share = meta.get("yamnet_moods") or {}
        words += [m.lower() for m, s in share.items() if s >= MOOD_SHARE_TAG]
        rec["tags"] = list(dict.fromkeys([*rec["tags"], *words]))
        lines.append(json.dumps(rec, ensure_ascii=False, sort_keys=True))
        report.items += 1
        report.with_image += bool(rec.get("image"))
        report.with_audio += bool(rec.get("audio"))
        report.multimodal += bool(rec.get("image")) and bool(rec.get("audio"))
        src = labels[rec["id"]].get("source", "?")
        report.by_source[src] = report.by_source.get(src, 0) + 1
        if rec.get("audio") and (
            "music" in rec["tags"] or labels[rec["id"]].get("category") == "sounds"
        ):
            report.music_or_ambient += 1
    wanted = {Path(r["image"]).name for r in records if r.get("image")}
    wanted |= {Path(r["audio"]).name for r in records if r.get("audio")}
    for stale in media.iterdir():
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
    (out / "catalogue.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "benchmark_labels.json").write_text(
        json.dumps(labels, indent=1, sort_keys=True, ensure_ascii=False)
    )
    state_path.write_text(json.dumps(new_state, sort_keys=True))
    from retrieval.datasets.media.personas import write_personas

    write_personas(out, labels)
    report.seconds["total"] = round(time.perf_counter() - t0, 1)
    (out / "build-report.json").write_text(json.dumps(report.to_dict(), indent=2))
    logger.info("media catalogue: %d items in %s", report.items, out)
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval.datasets.media.build OUT_DIR`: build the media catalogue there."""
    parser = argparse.ArgumentParser(prog="python -m retrieval.datasets.media.build")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--cache", type=Path, help="package cache (default ~/.fusionrec/cache/media)"
    )
    parser.add_argument("--no-moods", action="store_true", help="skip YAMNet mood tagging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        report = build_media_catalogue(args.out_dir, cache=args.cache, moods=not args.no_moods)
    except FusionrecError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
