"""One function per media source: extracted package files -> catalogue rows.

Why rows carry `labels` apart from the text: the benchmark needs relevance labels that the
system cannot read (the folder a stamp is filed in, the mood folder of a track). Each row
keeps those in `labels`; build.py writes them to a separate file and never into a field
the system reads. Ids are derived from file names that carry no label (a track's file name
does carry its mood, so its id is a hash of it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.datasets.media.rcc import RccError, RccFile

logger = logging.getLogger(__name__)

TUXPAINT_STAMPS = "usr/share/tuxpaint/stamps"
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
WESNOTH_MUSIC = "usr/share/games/wesnoth/1.16/data/core/music"
SINGULARITY_MUSIC = "usr/share/games/singularity/music"
IMMICH_TRACKS = "immich_memories_music/tracks"

# Tux Paint folders left out: letters, digits, operators and shapes are not media a person
# would ask to be recommended.
STAMP_SKIP = ("symbols/alphabets", "symbols/math", "symbols/shapes")
MIN_MUSIC_SECONDS = 20.0  # shorter game-music stings (victory/defeat jingles) are left out


@dataclass(frozen=True)
class MediaBlob:
    """Where a media file comes from: a file on disk or bytes read out of an archive."""

    suffix: str  # ".png", ".svg", ".webp", ".ogg", ".opus", ...
    path: Path | None = None
    read: Callable[[], bytes] | None = None

    def data(self) -> bytes:
        if self.read is not None:
            return self.read()
        assert self.path is not None
        return self.path.read_bytes()


@dataclass
class MediaRow:
    """One catalogue row before its media are converted and copied."""

    id: str
    title: str
    description: str
    tags: list[str]
    metadata: dict[str, Any]
    image: MediaBlob | None = None
    audio: MediaBlob | None = None
    labels: dict[str, Any] = field(default_factory=dict)  # withheld from the system
    music: bool = False  # a music track: cut to an excerpt, measured for tempo and mood


def slug(text: str) -> str:
    """'Chichén Itzá' -> 'chichen-itza'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def humanize(stem: str) -> str:
    """'flute_traversiere' -> 'Flute traversiere'; 'LRRain_in_garden_01_LA_cut' handled apart."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).replace("_", " ").replace("-", " ")
    words = re.sub(r"\s+", " ", re.sub(r"\b\d+\b", " ", words)).strip()
    return (words[:1].upper() + words[1:]) if words else stem


def sentence_title(sentence: str, stem: str) -> str:
    """A title from a Tux Paint description: 'A Sumatran tiger.' -> 'Sumatran tiger'."""
    first = re.split(r"(?<=[.!?])\s+", sentence.strip())[0]  # "Bishop. Can only move ..."
    text = first.strip().rstrip(".!").strip()
    text = re.sub(r"^(a|an|the)\s+", "", text, flags=re.IGNORECASE)
    text = text.replace("\u201c", "").replace("\u201d", "").replace('"', "")
    if not text or len(text.split()) > 7:
        return humanize(stem)
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------- Tux Paint stamps


def tuxpaint_rows(root: Path, *, package: str) -> list[MediaRow]:
    """Every Tux Paint stamp with an English description; its sound when it has one.

    Withheld: `category` (the top folder: animals, food, space, ...) and `subcategory`.
    Not used: the `_desc*.ogg` files, which are spoken descriptions, not the thing's sound.
    """
    base = root / TUXPAINT_STAMPS
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: Tux Paint stamps folder not found")
    rows: list[MediaRow] = []
    seen_titles: dict[str, int] = {}
    used_ids: set[str] = set()
    for txt in sorted(base.rglob("*.txt")):
        rel = txt.relative_to(base)
        if any(rel.as_posix().startswith(p) for p in STAMP_SKIP):
            continue
        stem = txt.stem
        image = next(
            (txt.with_suffix(s) for s in (".png", ".svg") if txt.with_suffix(s).is_file()), None
        )
        if image is None:
            continue
        try:
            first = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        except IndexError:
            continue
        if not first or "=" in first.split(" ")[0]:
            continue
        sound = next(
            (txt.with_suffix(s) for s in (".ogg", ".wav") if txt.with_suffix(s).is_file()), None
        )
        parts = rel.parent.parts
        cartoon = "cartoon" in parts
        title = sentence_title(first, stem)
        n = seen_titles.get(title.lower(), 0) + 1
        seen_titles[title.lower()] = n
        if n > 1:
            title = f"{title} ({n})"
        item_id = f"stamp-{slug(stem)}"
        if item_id in used_ids:
            item_id = f"{item_id}-{short_hash(rel.as_posix(), 4)}"
        used_ids.add(item_id)
        style = "cartoon drawing" if cartoon else "drawing"
        desc = first.rstrip()
        if not desc.endswith((".", "!", "?")):
            desc += "."
        desc += f" A {style} from Tux Paint, the children's painting program"
        desc += ", with a recording of its sound." if sound else "."
        tags = ["drawing", "clip art", "for kids"] + (["cartoon"] if cartoon else [])
        if sound:
            tags.append("sound")
        rows.append(
            MediaRow(
                id=item_id,
                title=title,
                description=desc,
                tags=tags,
                metadata={
                    "source": "Tux Paint stamps",
                    "source_package": package,
                    "license": "GPL-2.0-or-later",
                    "author": "Tux Paint contributors (New Breed Software)",
                },
                image=MediaBlob(image.suffix, path=image),
                audio=MediaBlob(sound.suffix, path=sound) if sound else None,
                labels={
                    "source": "tuxpaint",
                    "category": parts[0] if parts else "",
                    "subcategory": "/".join(p for p in parts[1:] if p != "cartoon"),
                },
            )
        )
    return rows


# ---------------------------------------------------------------- GCompris (.rcc + .qml)

_QML_PAIR = re.compile(
    r'"(\w+)"\s*:\s*(?:qsTr\(\s*)?(?:[\w.]+\(\s*)?"((?:[^"\\]|\\.)*)"', re.DOTALL
)


def qml_entries(text: str) -> list[dict[str, str]]:
    """The innermost `{ "key": qsTr("..."), ... }` objects of a GCompris board/dataset file
    that carry a title or a text (at any nesting depth: boards nest them in `tab: [...]`,
    datasets in arrays of levels)."""
    out: list[dict[str, str]] = []
    starts: list[int] = []
    inner: list[bool] = []  # per open brace: no brace opened inside it yet
    for i, ch in enumerate(text):
        if ch == "{":
            if inner:
                inner[-1] = False
            starts.append(i)
            inner.append(True)
        elif ch == "}" and starts:
            start, innermost = starts.pop(), inner.pop()
            if not innermost:
                continue
            pairs = {
                k: v.replace('\\"', '"').replace("\\'", "'")
                for k, v in _QML_PAIR.findall(text[start : i + 1])
            }
            if "title" in pairs or "text" in pairs:
                out.append(pairs)
    return out


def readme_credits(text: str) -> dict[str, dict[str, str]]:
    """GCompris resource READMEs: blocks of Copyright/License/Source then 'Files:' lists."""
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text):
        info: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.lower().startswith("files:"):
                in_files = True
                rest = line[6:].strip()
                files.extend(rest.split()) if rest else None
                continue
            m = re.match(r"(Copyright|License|Source)\s*:\s*(.*)", line, re.IGNORECASE)
            if m and not in_files:
                info[m.group(1).lower()] = m.group(2).strip()
            elif in_files:
                files.append(line)
        for f in files:
            out[Path(f).name] = info
    return out


class _Rcc:
    """One GCompris activity's .rcc: entries by file name, credits from its READMEs."""

    def __init__(self, root: Path, activity: str) -> None:
        self.activity = activity
        self.rcc = RccFile.open(root / GCOMPRIS_RCC / f"{activity}.rcc")
        self.prefix = f"gcompris/src/activities/{activity}/"
        self.credits: dict[str, dict[str, str]] = {}
        for name in self.rcc.names():
            if name.endswith("README"):
                self.credits.update(readme_credits(self.rcc.read(name).decode("utf-8", "replace")))

    def text(self, rel: str) -> str:
        return self.rcc.read(self.prefix + rel).decode("utf-8", "replace")

    def find(self, rel_or_qrc: str) -> str | None:
        path = rel_or_qrc.replace("qrc:/", "").replace("$CA", "ogg")
        if path in self.rcc:
            return path
        path = self.prefix + rel_or_qrc
        return path if path in self.rcc else None

    def blob(self, path: str) -> MediaBlob:
        return MediaBlob(Path(path).suffix, read=lambda: self.rcc.read(path))

    def credit(self, path: str, default_license: str) -> dict[str, str]:
        info = self.credits.get(Path(path).name, {})
        out = {"license": info.get("license", default_license)}
        if info.get("copyright"):
            out["author"] = info["copyright"]
        if info.get("source"):
            out["original"] = info["source"]
        return out


def _gcompris_meta(package: str, activity: str, **extra: str) -> dict[str, Any]:
    return {
        "source": f"GCompris ({activity.replace('_', ' ')} activity)",
        "source_package": package,
        **extra,
    }


def gcompris_rows(root: Path, *, package: str) -> list[MediaRow]:
    """Farm animals (photo + sound), world music (photo + clip), world animals, monuments,
    planets, instruments (drawing + sample) and named ambient sounds, each described by
    GCompris' own texts.

    Withheld: `category` ("animals", "music", "instruments", "monuments", "space", "sounds").
    """
    rows: list[MediaRow] = []
    for fn in (_farm, _world_music, _world_animals, _monuments, _planets, _instruments, _sounds):
        try:
            rows.extend(fn(root, package))
        except (RccError, OSError, KeyError) as e:
            logger.warning("GCompris %s skipped: %s", fn.__name__.strip("_"), e)
    return rows


def _board_entries(r: _Rcc) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for name in r.rcc.names():
        if name.startswith(r.prefix + "resource/board/") and name.endswith(".qml"):
            out.extend(qml_entries(r.rcc.read(name).decode("utf-8", "replace")))
    return out


def _farm(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "explore_farm_animals")
    rows = []
    for e in _board_entries(r):
        photo, sound = r.find(e.get("image2", "")), r.find(e.get("audio", ""))
        if not photo or not e.get("title"):
            continue
        credit = r.credit(photo, "Public domain")
        rows.append(
            MediaRow(
                id=f"gc-farm-{slug(e['title'])}",
                title=f"{e['title']} (photo and sound)",
                description=f"{e['text']} A photo of a {e['title'].lower()} with a recording "
                "of its call, from GCompris' farm animals activity.",
                tags=["photo", "sound", "for kids"],
                metadata=_gcompris_meta(package, r.activity, **credit),
                image=r.blob(photo),
                audio=r.blob(sound) if sound else None,
                labels={"source": "gcompris", "category": "animals", "subcategory": "farm"},
            )
        )
    return rows


def _world_music(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "explore_world_music")
    rows = []
    for e in _board_entries(r):
        clip, photo = r.find(e.get("audio", "")), r.find(e.get("image2", ""))
        if not clip or not e.get("title"):
            continue
        rows.append(
            MediaRow(
                id=f"gc-music-{slug(e['title'])}",
                title=f"Music of {e['title']}",
                description=f"{e['text']} A short music clip from {e['title']} with a photo "
                "of its musicians or instruments, from GCompris' world music activity.",
                tags=["music", "world music", "photo"],
                metadata=_gcompris_meta(package, r.activity, **r.credit(clip, "GPL-3.0-or-later")),
                image=r.blob(photo) if photo else None,
                audio=r.blob(clip),
                labels={"source": "gcompris", "category": "music", "subcategory": "world"},
                music=True,
            )
        )
    return rows


def _world_animals(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "explore_world_animals")
    rows, seen = [], set()
    for e in _board_entries(r):
        photo = r.find(e.get("image2", ""))
        if not photo or not e.get("title") or e["title"] in seen:
            continue
        seen.add(e["title"])
        rows.append(
            MediaRow(
                id=f"gc-animal-{slug(e['title'])}",
                title=f"{e['title']} (photo)",
                description=f"{e['text']} A photo from GCompris' world animals activity.",
                tags=["photo", "for kids"],
                metadata=_gcompris_meta(package, r.activity, **r.credit(photo, "Public domain")),
                image=r.blob(photo),
                labels={"source": "gcompris", "category": "animals", "subcategory": "wild"},
            )
        )
    return rows


def _monuments(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "explore_monuments")
    rows, seen = [], set()
    for e in _board_entries(r):
        photo = r.find(e.get("image2", ""))
        if not photo or not e.get("title") or e["title"] in seen:
            continue
        seen.add(e["title"])
        rows.append(
            MediaRow(
                id=f"gc-monument-{slug(e['title'])}",
                title=e["title"],
                description=f"{e['text']} A photo from GCompris' monuments activity.",
                tags=["photo", "landmark", "travel"],
                metadata=_gcompris_meta(package, r.activity, **r.credit(photo, "CC-BY-SA")),
                image=r.blob(photo),
                labels={"source": "gcompris", "category": "monuments", "subcategory": ""},
            )
        )
    return rows


def _planets(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "solar_system")
    rows = []
    for name in r.rcc.names():
        if not (name.startswith(r.prefix + "resource/") and name.endswith(".webp")):
            continue
        body = Path(name).stem
        what = (
            "the Sun, the star at the centre of our solar system"
            if body == "sun"
            else (f"the planet {body.capitalize()}")
        )
        rows.append(
            MediaRow(
                id=f"gc-planet-{slug(body)}",
                title=body.capitalize(),
                description=f"A picture of {what}, from GCompris' solar system activity.",
                tags=["picture", "astronomy"],
                metadata=_gcompris_meta(package, r.activity, **r.credit(name, "Public domain")),
                image=r.blob(name),
                labels={"source": "gcompris", "category": "space", "subcategory": "planets"},
            )
        )
    return rows


def _instruments(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "instruments")
    rows, seen = [], set()
    for e in qml_entries(r.text("instruments.js")):
        image, sample = r.find(e.get("image", "")), r.find(e.get("audio", ""))
        name = re.sub(r"^Find the\s+", "", e.get("text", ""), flags=re.IGNORECASE).strip()
        if not image or not sample or not name or name in seen:
            continue
        seen.add(name)
        rows.append(
            MediaRow(
                id=f"gc-instrument-{slug(Path(image).stem)}",
                title=f"{name[:1].upper()}{name[1:]} (drawing and sample)",
                description=f"A drawing of a {name} with a short recorded sample of how it "
                "sounds, from GCompris' musical instruments activity.",
                tags=["musical instrument", "drawing", "sound", "for kids"],
                metadata=_gcompris_meta(
                    package,
                    r.activity,
                    license="GPL-3.0-or-later",
                    author="Bruno Coudoin and GCompris contributors",
                ),
                image=r.blob(image),
                audio=r.blob(sample),
                labels={"source": "gcompris", "category": "instruments", "subcategory": ""},
            )
        )
    return rows


# memory-sound file stem -> (title, what it is). The file names are the only metadata these
# recordings carry; the wording below only expands them.
SOUND_NAMES: dict[str, tuple[str, str]] = {
    "LRRain_in_garden_01_LA_cut": ("Rain in the garden", "rain falling in a garden"),
    "LRFrogsInPondDuringStormLACut": (
        "Frogs in a pond during a storm",
        "frogs croaking in a pond while a storm passes",
    ),
    "LRBuddhist_gong_05_LA": ("Buddhist gong", "a single stroke on a Buddhist gong"),
    "LRHeart_beat_01_LA": ("Heartbeat", "a beating heart"),
    "LRTrain_slowing_down_01_LA_cut": ("Train slowing down", "a train slowing down"),
    "LRApplauses_1_LA_cut": ("Applause", "an audience applauding"),
    "LRBark_1_LA_cut": ("Dog barking", "a dog barking"),
    "LRStartAndStopCarEngine1LACut": (
        "Car engine starting and stopping",
        "a car engine starting, running and stopping",
    ),
    "LRDoor_Open_2_LA": ("Door opening", "a door being opened"),
    "LRFactory_noise_01_LA": ("Factory noise", "machines working in a factory"),
    "LRFireballs_01_LA": ("Fireballs", "fireballs whooshing past"),
    "LRRing_01_LA": ("Ringing bell", "a bell ringing"),
    "guitar_melody": ("Guitar melody", "a short melody played on a guitar"),
}


def _sounds(root: Path, package: str) -> list[MediaRow]:
    r = _Rcc(root, "memory-sound")
    rows = []
    for stem, (title, what) in SOUND_NAMES.items():
        path = r.find(f"resource/{stem}.ogg")
        if not path:
            continue
        lic = "GPL-3.0-or-later" if stem.startswith("guitar") else "Free Art License 1.2"
        rows.append(
            MediaRow(
                id=f"gc-sound-{slug(title)}",
                title=title,
                description=f"A recording of {what}, from GCompris' sound memory game.",
                tags=["sound", "recording"],
                metadata=_gcompris_meta(package, r.activity, license=lic),
                audio=r.blob(path),
                labels={"source": "gcompris", "category": "sounds", "subcategory": ""},
            )
        )
    return rows


# ---------------------------------------------------------------- music


def immich_rows(root: Path, *, package: str) -> list[MediaRow]:
    """The mood-foldered tracks of immich-memories-music.

    Withheld: `mood` (the folder), `bpm` and `key` (LICENSE-MUSIC). The file name carries the
    mood, so ids are hashes and titles are numbered in hash order.
    """
    base = root / IMMICH_TRACKS
    lic = next(iter(root.glob("*.dist-info/licenses/LICENSE-MUSIC")), None)
    facts: dict[str, tuple[int, str]] = {}
    if lic is not None:
        for m in re.finditer(
            r"(\S+\.opus)\s+(\d+)\s*bpm\s+([A-G][b#]?\s+(?:major|minor))", lic.read_text()
        ):
            facts[m.group(1)] = (int(m.group(2)), m.group(3))
    files = sorted(base.glob("*/*.opus"), key=lambda p: short_hash(p.name))
    rows = []
    for n, f in enumerate(files, start=1):
        style = "acoustic" if "acoustic" in f.stem else "electronic"
        bpm, key = facts.get(f.name, (None, None))
        rows.append(
            MediaRow(
                id=f"track-{short_hash(f.name)}",
                title=f"Memories theme {n} ({style})",
                description=f"A 30-second {style} instrumental written for photo-memory "
                "slideshows (immich-memories-music, generated with the ACE-Step model).",
                tags=["music", "instrumental", style],
                metadata={
                    "source": "immich-memories-music",
                    "source_package": package,
                    "license": "MIT",
                    "author": "immich-memories contributors (generated with ACE-Step 1.5)",
                },
                audio=MediaBlob(f.suffix, path=f),
                labels={"source": "immich", "mood": f.parent.name, "bpm": bpm, "key": key},
                music=True,
            )
        )
    return rows


def _vorbis_tags(path: Path) -> tuple[dict[str, str], float]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as s:
        return dict(s.copy_metadata()), s.frames / s.samplerate


def tagged_music_rows(
    root: Path, *, package: str, folder: str, prefix: str, license: str, collection: str
) -> list[MediaRow]:
    """Vorbis-tagged game soundtracks (Wesnoth, Singularity): title/artist/album/genre tags."""
    base = root / folder
    rows = []
    seen: set[str] = set()
    for f in sorted(base.rglob("*.ogg")):
        try:
            tags, seconds = _vorbis_tags(f)
        except Exception as e:  # noqa: BLE001 - libsndfile raises several types
            logger.warning("%s: unreadable (%s); skipped", f, e)
            continue
        title = tags.get("title", "").strip()
        if not title or seconds < MIN_MUSIC_SECONDS:
            continue
        if title.lower() in seen:
            title = f"{title} ({f.stem.replace('_', ' ').replace('-', ' ')})"
        seen.add(title.lower())
        artist = tags.get("artist", "").strip()
        album = tags.get("album", "").strip() or collection
        genre = tags.get("genre", "").strip()
        year = tags.get("date", "")[:4]
        desc = f"“{title}”" + (f" by {artist}" if artist else "") + f", from {album}"
        desc += f" ({year})." if year.isdigit() else "."
        if genre and genre.lower() != "game":
            desc += f" Genre: {genre.lower()}."
        if tags.get("comment"):
            desc += " " + tags["comment"].strip()
        rows.append(
            MediaRow(
                id=f"{prefix}-{slug(f.stem)}",
                title=title,
                description=desc + f" {int(seconds // 60)} min {int(seconds % 60)} s long.",
                tags=["music", "soundtrack", "instrumental"] + ([genre.lower()] if genre else []),
                metadata={
                    "source": collection,
                    "source_package": package,
                    "license": license,
                    "author": artist,
                    "full_length_s": round(seconds, 1),
                },
                audio=MediaBlob(".ogg", path=f),
                labels={"source": prefix},
                music=True,
            )
        )
    return rows


# ---------------------------------------------------------------- scikit-image photos

# file -> (title, description, license, credit); wording from skimage.data's docstrings.
SKIMAGE_PHOTOS: dict[str, tuple[str, str, str, str]] = {
    "astronaut.png": (
        "Astronaut Eileen Collins",
        "NASA portrait of astronaut Eileen Collins in her flight suit, a flag behind her.",
        "Public domain",
        "NASA",
    ),
    "chelsea.png": (
        "Chelsea the cat",
        "A photo of Chelsea, a tabby cat, close up.",
        "CC0-1.0",
        "Stefan van der Walt",
    ),
    "coffee.png": (
        "Cup of coffee",
        "A photo of a cup of coffee with latte art on a saucer.",
        "CC0-1.0",
        "Rachel Michetti",
    ),
    "rocket.jpg": (
        "Falcon 9 rocket on the launch pad",
        "A photo of a SpaceX Falcon 9 rocket standing on its launch pad.",
        "Public domain",
        "SpaceX",
    ),
    "hubble_deep_field.jpg": (
        "Hubble eXtreme Deep Field",
        "The Hubble eXtreme Deep Field: thousands of distant galaxies in a tiny patch of sky.",
        "Public domain",
        "NASA and ESA",
    ),
    "camera.png": (
        "Photographer with a camera",
        "A black-and-white photo of a person holding a camera on a tripod.",
        "CC0-1.0",
        "Lav Varshney",
    ),
}


def skimage_rows(*, package: str) -> list[MediaRow]:
    """A few real photos shipped with scikit-image (already installed; nothing to fetch)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        logger.warning("scikit-image is not installed; its sample photos are left out")
        return []
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = []
    for name, (title, desc, lic, credit) in SKIMAGE_PHOTOS.items():
        path = data / name
        if not path.is_file():
            continue
        rows.append(
            MediaRow(
                id=f"photo-{slug(Path(name).stem)}",
                title=title,
                description=desc + " From scikit-image's sample images.",
                tags=["photo"],
                metadata={
                    "source": "scikit-image sample data",
                    "source_package": package,
                    "license": lic,
                    "author": credit,
                },
                image=MediaBlob(path.suffix, path=path),
                labels={"source": "skimage"},
            )
        )
    return rows
