"""Build the demo catalogue: a free game-asset & media library made from packaged files only.

Why: the demo and the tests need a real multimodal catalogue (text, images, sounds) that is
license-clean, reproducible and needs no download. Kenney's CC0 assets ship inside the
`arcade` wheel (read as files; arcade is never imported) and scikit-image ships sample
photos whose licenses its docstrings state. See CREDITS.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.datasets.demo_assets import (
    ASSET_TAGS,
    COLOURS,
    LABELS,
    NOUNS,
    PHOTOS,
    QUALIFIERS,
    SIZE_WORDS,
    SOUND_TAGS,
    SOUNDS,
    SPRITES,
)
from retrieval.errors import FusionrecError, MissingDependencyError

logger = logging.getLogger(__name__)

CC0_URL = "https://creativecommons.org/publicdomain/zero/1.0/"
KENNEY = "Kenney (www.kenney.nl)"


def _package_dir(name: str) -> Path | None:
    """Locate an installed package's folder without importing it (arcade's deps are absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(sorted(spec.submodule_search_locations)[0])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _words(stem: str) -> list[str]:
    """'tankBody_bigRed2' -> ['tank', 'body', 'big', 'red', '2']."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|\d+|[A-Z]+(?![a-z])", stem)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _dominant_colour(img: Any) -> str:
    """Name the most common hue among opaque, saturated pixels (grey/black/white otherwise)."""
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3].reshape(-1)
    hsv = np.asarray(rgba.convert("RGB").convert("HSV")).reshape(-1, 3).astype(np.float32) / 255
    hsv = hsv[alpha > 128] if (alpha > 128).any() else hsv
    h, s, v = hsv[:, 0] * 360, hsv[:, 1], hsv[:, 2]
    vivid = (s > 0.3) & (v > 0.3)  # dark or washed-out pixels carry no reliable hue
    if vivid.mean() < 0.25:
        mean_v = float(v.mean())
        return "black" if mean_v < 0.25 else "white" if mean_v > 0.85 else "grey"
    edges = (11, 40, 70, 165, 200, 260, 300, 340, 361)  # upper hue bounds, degrees
    names = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "red")
    counts = np.bincount(np.searchsorted(edges, h[vivid], side="right"), minlength=len(edges))
    counts[0] += counts[-1]  # hues wrap around: 340-360 is red too
    counts[-1] = 0
    best = names[int(np.argmax(counts))]
    if best == "orange" and float(np.median(v[vivid])) < 0.7:
        return "brown"
    if best == "orange" and float(np.median(s[vivid])) < 0.6:
        return "tan"
    if best == "red" and float(np.median(s[vivid])) < 0.5 and float(np.median(v[vivid])) > 0.8:
        return "pink"
    return best


def _image_facts(path: Path) -> dict[str, Any]:
    """Metadata of one image: media type, pixel size and dominant colour name."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        kind = "jpeg" if img.format == "JPEG" else "png"
        facts = {"media_type": f"image/{kind}", "width": img.width, "height": img.height}
        facts["dominant_colour"] = _dominant_colour(img)
        facts["transparent"] = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        return facts


def _sound_facts(path: Path) -> dict[str, Any]:
    """Duration plus an honest timbre summary from the spectral centroid (no labels guessed)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    frame = 1024
    n = max(1, len(mono) // frame)
    frames = mono[: n * frame].reshape(n, frame) if len(mono) >= frame else mono[None, :]
    spec = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1))
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / sr)
    energy = spec.sum(axis=1)
    cent = (spec * freqs).sum(axis=1) / np.maximum(energy, 1e-9)
    loud = energy > 0.05 * energy.max()
    c = cent[loud] if loud.any() else cent
    mean_c = float(np.average(c, weights=energy[loud] if loud.any() else None))
    third = max(1, len(c) // 3)
    trend = float(c[-third:].mean() - c[:third].mean())
    facts: dict[str, Any] = {"duration_s": round(len(mono) / sr, 3), "sample_rate": int(sr)}
    facts["channels"] = int(data.shape[1])
    facts["timbre"] = "bright" if mean_c > 3000 else "deep" if mean_c < 1000 else "mid-range"
    facts["trend"] = "rising" if trend > 300 else "falling" if trend < -300 else "steady"
    return facts


def _record(
    item_id: str, title: str, desc: str, tags: list[str], src: Path, **meta: Any
) -> dict[str, Any]:
    """One JSONL row; `__src__` (the file to copy) is removed before writing."""
    kind = "audio" if meta["media_type"].startswith("audio") else "image"
    meta.pop("transparent", None)
    tags = sorted(dict.fromkeys(t for t in tags if t))
    rec = {"id": item_id, "title": title, "description": desc, "tags": tags, "__src__": src}
    return {**rec, kind: f"media/{item_id}{src.suffix.lower()}", "metadata": meta}


def _kenney_meta(src: Path, assets: Path, collection: str) -> dict[str, Any]:
    return {
        "license": "CC0-1.0",
        "license_url": CC0_URL,
        "author": KENNEY,
        "collection": f"Kenney {collection}",
        "source_package": f"arcade {_version('arcade')}",
        "source_path": f"arcade/resources/assets/{src.relative_to(assets).as_posix()}",
    }


def _sprite_title(stem: str) -> tuple[str, tuple[str, str, str], str, list[str]]:
    """Split a Kenney file name into (display phrase, noun entry, colour, qualifiers).

    The longest leading run of words that names a known noun wins, so 'tileSand1' is a sand map
    tile while 'tank_sand' is a sand-coloured tank.
    """
    words = [w for w in _words(stem) if not w.isdigit()]
    quals = [w for w in words if w in QUALIFIERS]
    rest_words = [w for w in words if w not in QUALIFIERS]
    base = next(
        (
            " ".join(rest_words[:n])
            for n in range(len(rest_words), 0, -1)
            if " ".join(rest_words[:n]) in NOUNS
        ),
        None,
    )
    if base is None:
        raise KeyError(f"no description for asset name {stem!r}")
    left = rest_words[len(base.split()) :]
    colour = next((w for w in left if w in COLOURS), "")
    noun = NOUNS[base]
    size = [QUALIFIERS[q] for q in quals if q in SIZE_WORDS]
    rest = [QUALIFIERS[q] for q in quals if QUALIFIERS[q] and QUALIFIERS[q] not in size]
    shown = "dark grey" if colour == "dark" else colour
    phrase = " ".join([*size, shown, noun[0]]).replace("  ", " ").strip()
    return phrase, noun, shown, rest


def _sprite_items(assets: Path) -> list[dict[str, Any]]:
    out = []
    for folder, (collection, genre, kind, use, stems) in SPRITES.items():
        for stem in stems.split():
            matches = sorted((assets / "images" / folder).rglob(f"{stem}.png"))
            if not matches:
                logger.warning("arcade asset %s/%s.png is missing; skipped", folder, stem)
                continue
            src = matches[0]
            phrase, (noun, category, blurb), colour, rest = _sprite_title(stem)
            facts = _image_facts(src)
            label = LABELS.get(kind, f"{kind} sprite")
            title = f"{phrase[0].upper()}{phrase[1:]} {label}" + (
                f" ({', '.join(rest)})" if rest else ""
            )
            bg = "a transparent background" if facts["transparent"] else "an opaque background"
            desc = (
                f"A CC0 flat cartoon-style {label} from Kenney's {collection} (bundled with the "
                f"arcade package): {blurb}. {facts['width']}×{facts['height']} PNG with {bg}"
                + (f", mostly {facts['dominant_colour']}. " if not colour else ". ")
                + f"Suited to {use}."
            )
            if rest:
                desc = desc.replace(f": {blurb}.", f": {blurb} ({', '.join(rest)}).")
            tags = [*ASSET_TAGS, category, genre, kind, facts["dominant_colour"], colour, noun]
            meta = {**_kenney_meta(src, assets, collection), **facts}
            out.append(
                _record(f"kenney-{_slug(folder)}-{_slug(stem)}", title, desc, tags, src, **meta)
            )
    return out


def _card_items(assets: Path) -> list[dict[str, Any]]:
    ranks = {"A": "Ace", "K": "King", "Q": "Queen", "J": "Jack", "10": "Ten"}
    specs = [
        (f"card{s}{r}", f"{name} of {s} playing card", s.lower())
        for s in ("Spades", "Hearts", "Diamonds", "Clubs")
        for r, name in ranks.items()
    ]
    specs += [("cardJoker", "Joker playing card", "joker")]
    specs += [
        (f"cardBack_{c}1", f"{c.capitalize()} playing card back", c)
        for c in ("blue", "green", "red")
    ]
    out = []
    for stem, title, suit in specs:
        src = assets / "images" / "cards" / f"{stem}.png"
        if not src.is_file():
            logger.warning("arcade card %s is missing; skipped", src.name)
            continue
        facts = _image_facts(src)
        colour = {"hearts": "red", "diamonds": "red", "spades": "black", "clubs": "black"}.get(
            suit, facts["dominant_colour"]
        )
        what = (
            "the back design shown on face-down cards"
            if "back" in title
            else "the wild joker card, a jester's cap in red"
            if suit == "joker"
            else f"the {title.lower()[:-13]}, a {colour} suit card with big indices"
        )
        desc = (
            f"A CC0 flat playing-card illustration from Kenney's boardgame art (bundled with the "
            f"arcade package): {what}. {facts['width']}×{facts['height']} PNG with a transparent "
            f"background, mostly {facts['dominant_colour']}. Suited to solitaire, poker and other "
            "card games."
        )
        tags = [*ASSET_TAGS, "playing card", "card game", "cards", suit, colour]
        meta = {**_kenney_meta(src, assets, "boardgame art"), **facts}
        item_id = f"kenney-card-{_slug(title.removesuffix(' playing card'))}"
        out.append(_record(item_id, title, desc, tags, src, **meta))
    return out


def _sound_items(assets: Path) -> list[dict[str, Any]]:
    out = []
    files = sorted((assets / "sounds").glob("*.wav"))
    sizes: dict[str, int] = {}
    for src in files:
        key = " ".join(w for w in _words(src.stem) if not w.isdigit())
        sizes[key] = sizes.get(key, 0) + 1
    for src in files:
        words = _words(src.stem)
        number = next((w for w in words if w.isdigit()), "")
        family = " ".join(w for w in words if not w.isdigit())
        if family not in SOUNDS:
            logger.warning("unknown sound family %r in %s; skipped", family, src.name)
            continue
        title, what, tags, mood = SOUNDS[family]
        f = _sound_facts(src)
        secs = f["duration_s"]
        length = "short" if secs < 0.35 else "medium-length" if secs < 0.9 else "long"
        shape = {"rising": "brightens as it plays", "falling": "darkens as it plays"}.get(
            f.pop("trend"), "keeps a steady tone"
        )
        timbre = f.pop("timbre")
        desc = (
            f"A CC0 retro game sound effect from Kenney's audio (bundled with the arcade package): "
            f"{what}. A {length} {timbre} sound ({f['duration_s']:.2f} s, "
            f"{f['sample_rate']} Hz {'mono' if f['channels'] == 1 else 'stereo'} WAV) that "
            f"{shape}; {mood} in mood."
            + (f" Variant {number} of {sizes[family]} in this set." if sizes[family] > 1 else "")
        )
        meta = {**_kenney_meta(src, assets, "sound effects"), "media_type": "audio/wav", **f}
        tag_list = [*tags.split(), *SOUND_TAGS, mood, timbre, length]
        title = f"{title} sound effect {number or 1}"
        out.append(_record(f"kenney-sfx-{_slug(src.stem)}", title, desc, tag_list, src, **meta))
    return out


def _photo_items() -> list[dict[str, Any]]:
    pkg = _package_dir("skimage")
    if pkg is None:
        logger.warning("scikit-image is not installed; the sample photos are left out")
        return []
    out = []
    for name, (title, what, tags, lic, credit) in PHOTOS.items():
        src = pkg / "data" / name
        if not src.is_file():
            logger.warning("scikit-image sample %s is missing; skipped", name)
            continue
        facts = _image_facts(src)
        fmt = facts["media_type"].split("/")[1].upper()
        lic_words = {"CC0-1.0": "CC0", "Public domain": "public-domain"}.get(
            lic, "copyright-free (no known restrictions)"
        )
        desc = (
            f"A {lic_words} image from scikit-image's sample data (credit: {credit}): {what}. "
            f"{facts['width']}×{facts['height']} {fmt}, mostly {facts['dominant_colour']}. "
            "Useful as a backdrop, a texture or a test image for image tools."
        )
        meta = {"license": lic, "author": credit, "collection": "scikit-image sample data"}
        meta["source_package"] = f"scikit-image {_version('scikit-image')}"
        meta["source_path"] = f"skimage/data/{name}"
        tag_list = [*tags.split(), "photo", facts["dominant_colour"]]
        out.append(
            _record(f"photo-{_slug(Path(name).stem)}", title, desc, tag_list, src, **meta, **facts)
        )
    return out


def build_demo_catalogue(out_dir: Path) -> Path:
    """Write `out_dir/catalogue.jsonl` and copy its media into `out_dir/media/`.

    Deterministic: the same installed packages give byte-identical output.

    Returns:
        The path of the written catalogue.jsonl.

    Raises:
        MissingDependencyError: arcade, Pillow or soundfile is not installed.
    """
    for module, hint in (("PIL", "pip install pillow"), ("soundfile", "pip install soundfile")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"'{module}' is needed to build the demo catalogue: {hint}"
            )
    arcade = _package_dir("arcade")
    if arcade is None or not (arcade / "resources" / "assets").is_dir():
        raise MissingDependencyError(
            "the demo catalogue needs arcade's bundled Kenney assets: pip install --no-deps arcade"
        )
    assets = arcade / "resources" / "assets"
    records = _card_items(assets) + _sprite_items(assets) + _sound_items(assets) + _photo_items()
    out_dir = Path(out_dir)
    media = out_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    lines = []
    for rec in records:
        src = rec.pop("__src__")
        rel = rec.get("image") or rec.get("audio")
        wanted.add(Path(rel).name)
        shutil.copyfile(src, out_dir / rel)
        lines.append(json.dumps(rec, ensure_ascii=False))
    for stale in sorted(media.iterdir()):
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
    path = out_dir / "catalogue.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %d demo items to %s", len(lines), path)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval.datasets.demo_catalogue OUT_DIR`: build the demo catalogue there."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.datasets.demo_catalogue",
        description="Build the CC0/public-domain demo catalogue.",
    )
    parser.add_argument("out_dir", type=Path, help="folder for catalogue.jsonl and media/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = build_demo_catalogue(args.out_dir)
    except FusionrecError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
