"""Catalogue ingest: encode every modality present and upsert by id, resumably.

An item counts as done only once its `text` record carries the content hash, and that
record is written last for each batch, so an interrupted run redoes at most one batch.
Items whose image/audio failed go in without that modality, are reported, and are
retried on the next run (their hash is not recorded as complete).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.catalogue import Item, RowError, read_catalogue
from retrieval.config import IngestConfig
from retrieval.encoders.base import Encoder
from retrieval.errors import StoreError
from retrieval.store import VectorStore

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one ingest run did; `failed` has one entry per bad row or bad field."""

    added: int = 0
    updated: int = 0
    skipped: int = 0
    failed: list[RowError] = field(default_factory=list)

    @property
    def ingested(self) -> int:
        return self.added + self.updated + self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "skipped": self.skipped,
            "failed": [e.to_dict() for e in self.failed],
        }

    def summary(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, skipped {self.skipped} unchanged, "
            f"{len(self.failed)} problem(s)"
        )


class LazyEncoder:
    """A registered encoder that is built on first `get()`, so start-up loads no model for it.

    The name is checked at once (an unknown encoder is a config error); a missing weights
    file raises the encoder's own `ModelLoadError` when the model is first needed.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        from retrieval.encoders import encoder_factory

        encoder_factory(name)  # unknown name -> UnknownBackendError now, not at first use
        self.name = name
        self.kwargs = kwargs
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def get(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                from retrieval.encoders import create_encoder

                self._encoder = create_encoder(self.name, **self.kwargs)
            return self._encoder

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"LazyEncoder({self.name!r}, {state})"


class Encoders:
    """The encoders one store is built with. `image`/`audio` may be None (modality ignored).

    `image`/`audio` may also be `LazyEncoder`s (what `from_config` builds): serving needs only
    the text encoder, so those models load the first time ingest reads the attribute.
    """

    def __init__(
        self,
        text: Encoder,
        image: Encoder | LazyEncoder | None = None,
        audio: Encoder | LazyEncoder | None = None,
    ) -> None:
        self.text = text
        self._media: dict[str, Encoder | LazyEncoder | None] = {"image": image, "audio": audio}
        self._bridges: dict[str, Any] = {}

    @property
    def image(self) -> Encoder | None:
        return self._resolve("image")

    @property
    def audio(self) -> Encoder | None:
        return self._resolve("audio")

    def _resolve(self, modality: str) -> Encoder | None:
        enc = self._media[modality]
        return enc.get() if isinstance(enc, LazyEncoder) else enc

    def loaded(self, modality: str) -> bool:
        """Whether `modality`'s model is in memory (False when lazy and not yet used, or None)."""
        enc = self._media[modality]
        return enc.loaded if isinstance(enc, LazyEncoder) else enc is not None

    def __repr__(self) -> str:
        media = ", ".join(f"{m}={e!r}" for m, e in self._media.items())
        return f"Encoders(text={self.text!r}, {media})"

    @classmethod
    def from_config(cls, cfg: Any) -> Encoders:
        """Build the set an `EncoderConfig` names; image/audio "none" disables a modality.

        The text encoder loads now; image/audio load on first use (see `LazyEncoder`).
        """
        from retrieval.encoders import create_encoder

        common = {"device": cfg.device, "num_threads": cfg.num_threads}
        image = audio = None
        if cfg.image == "open-clip":
            image = LazyEncoder(
                "open-clip", model=cfg.clip_model, weights=cfg.clip_weights, **common
            )
        elif cfg.image != "none":
            image = LazyEncoder(cfg.image, **common)
        if cfg.audio == "clap":
            audio = LazyEncoder("clap", model=cfg.clap_model, **common)
        elif cfg.audio != "none":
            audio = LazyEncoder(cfg.audio, **common)
        return cls(text=create_encoder(cfg.text, **common), image=image, audio=audio)

    def bridge(self, modality: str) -> Any | None:
        """Label bridge into text space for a labelled image/audio encoder, else None."""
        enc = getattr(self, modality)
        if enc is None or not hasattr(enc, "labels"):
            return None
        if modality not in self._bridges:
            from retrieval.bridge import LabelBridge

            self._bridges[modality] = LabelBridge(self.text, list(enc.labels))
        return self._bridges[modality]

    def signature(self) -> dict[str, Any]:
        """Identity of every encoder; part of each item's content hash (loads image/audio)."""
        return {
            m: (e.get_config() if e is not None else None)
            for m, e in (("text", self.text), ("image", self.image), ("audio", self.audio))
        }


HASH_CHUNK_BYTES = 1 << 20  # media files are hashed in 1 MB reads, never read whole


def _file_digest(path: str | None, *, max_bytes: int | None = None) -> str:
    """SHA-1 of a media file read in chunks; a file over `max_bytes` is not read at all."""
    if not path or "://" in path:
        return str(path)
    try:
        p = Path(path)
        st = p.stat()
        if max_bytes is not None and st.st_size > max_bytes:  # refused at load; not read here
            return f"too-large:{st.st_size}:{st.st_mtime_ns}"
        h = hashlib.sha1()
        with p.open("rb") as fh:
            while chunk := fh.read(HASH_CHUNK_BYTES):
                h.update(chunk)
        return h.hexdigest()
    except (OSError, ValueError) as e:
        return f"unreadable:{getattr(e, 'errno', None)}"


def content_hash(item: Item, signature: dict[str, Any], *, max_bytes: int | None = None) -> str:
    """Changes whenever the item's text, media bytes or the encoders change."""
    media = {m: _file_digest(getattr(item, m), max_bytes=max_bytes) for m in ("image", "audio")}
    payload = {"item": dataclasses.asdict(item) | media, "encoders": signature}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def item_metadata(item: Item) -> dict[str, Any]:
    """Metadata stored beside every vector: enough to rebuild the Item from the store."""
    return {
        "title": item.title,
        "tags": json.dumps(list(item.tags), ensure_ascii=False),
        "item": json.dumps(dataclasses.asdict(item), ensure_ascii=False, default=str),
    }


def _load_media(
    items: Sequence[Item], modality: str, loader: Callable[[str], Any], failed: list[RowError]
) -> tuple[list[Item], list[Any]]:
    """Decode each item's file one by one so a bad file is reported by id and path."""
    ok_items: list[Item] = []
    loaded: list[Any] = []
    for item in items:
        path = getattr(item, modality)
        if not path:
            continue
        try:
            loaded.append(loader(path))
            ok_items.append(item)
        except (ValueError, OSError) as e:
            failed.append(RowError(item.id, modality, f"{path}: {e}"))
    return ok_items, loaded


def _encode_media(
    store: VectorStore,
    encoders: Encoders,
    modality: str,
    items: Sequence[Item],
    loaded: list[Any],
    batch_size: int,
) -> dict[str, list[tuple[str, float]]]:
    """Encode and upsert one modality (+ its text-space bridge). Returns top labels per id."""
    if not items:
        return {}
    from retrieval.encoders.base import top_labels

    enc = getattr(encoders, modality)
    bridge = encoders.bridge(modality)
    metas = [item_metadata(i) for i in items]
    ids = [i.id for i in items]
    tags: dict[str, list[tuple[str, float]]] = {}
    if bridge is not None:
        vecs, probs = enc.encode_with_labels(loaded, batch_size=batch_size)
        for item, labels in zip(items, top_labels(probs, list(enc.labels), k=5), strict=True):
            tags[item.id] = labels
        metas = [
            m | {f"{modality}_tags": json.dumps(tags[i])} for m, i in zip(metas, ids, strict=True)
        ]
        store.upsert(
            f"{modality}-text",
            ids,
            bridge.to_text_space(probs),
            metas,
            encoder_config={"bridge": enc.get_config(), "text": encoders.text.get_config()},
        )
    else:
        vecs = enc.encode(loaded, batch_size=batch_size)
    store.upsert(modality, ids, vecs, metas, encoder_config=enc.get_config())
    return tags


def _media_loader(modality: str, limits: IngestConfig) -> Callable[[str], Any]:
    """The per-file decoder for `modality`, refusing files over the configured size."""
    max_bytes = int(limits.max_file_mb * 2**20)
    if modality == "image":
        from retrieval.encoders.image import load_image

        return lambda path: load_image(path, max_bytes=max_bytes)
    from retrieval.encoders.audio import YAMNET_SR, load_audio

    def audio(path: str) -> tuple[Any, int]:  # encoders take (samples, rate)
        wave = load_audio(path, max_seconds=limits.max_audio_seconds, max_bytes=max_bytes)
        return wave, YAMNET_SR

    return audio


@contextmanager
def ingest_lock(store: VectorStore, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the store's ingest lock: one ingest at a time (other processes or threads).

    Raises:
        StoreError: another ingest still holds it after `wait_s` seconds.
    """
    from filelock import FileLock, Timeout

    path = store.lock_path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    if wait_s > 0:
        logger.info("waiting up to %.0f s for the ingest lock %s", wait_s, path)
    try:
        lock.acquire(timeout=max(0.0, wait_s))
    except Timeout as e:
        raise StoreError(
            f"another ingest into this store is running (lock {path}); try again when it "
            "has finished, or set [ingest] lock_wait_s to wait for it"
        ) from e
    try:
        yield
    finally:
        lock.release()


def ingest_items(
    items: Iterable[Item],
    store: VectorStore,
    encoders: Encoders,
    *,
    batch_size: int = 32,
    show_progress: bool = False,
    failed: list[RowError] | None = None,
    limits: IngestConfig | None = None,
    source: str | Path | None = None,
) -> IngestReport:
    """Encode and upsert `items`; unchanged items are skipped, so re-running resumes.

    Holds the store's ingest lock throughout (see `ingest_lock`); `limits` bounds file
    sizes and decoded audio (default: `IngestConfig()`). `source`, the folder of the
    catalogue the items came from, is stored with each new or changed item (`item_sources`):
    the app serves an item's media only from inside it (or from folders the operator names).

    Raises:
        StoreError: another ingest into the same store is running.
    """
    limits = limits or IngestConfig()
    with ingest_lock(store, wait_s=limits.lock_wait_s):
        return _ingest_locked(
            list(items),
            store,
            encoders,
            batch_size=batch_size,
            show_progress=show_progress,
            failed=failed,
            limits=limits,
            source=None if source is None else str(Path(source).resolve()),
        )


def _ingest_locked(
    items: list[Item],
    store: VectorStore,
    encoders: Encoders,
    *,
    batch_size: int,
    show_progress: bool,
    failed: list[RowError] | None,
    limits: IngestConfig,
    source: str | None,
) -> IngestReport:
    report = IngestReport(failed=list(failed or []))
    signature = encoders.signature()
    max_bytes = int(limits.max_file_mb * 2**20)
    hashes = {i.id: content_hash(i, signature, max_bytes=max_bytes) for i in items}
    existing: dict[str, str] = {}
    if items:
        ids, _, metas = store.get("text", [i.id for i in items], include_vectors=False)
        existing = {i: m.get("hash", "") for i, m in zip(ids, metas, strict=True)}
    todo = [i for i in items if existing.get(i.id) != hashes[i.id]]
    report.skipped = len(items) - len(todo)
    bar = None
    if show_progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="item", desc="ingest")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        batch_failed: list[RowError] = []
        media_tags: dict[str, dict[str, Any]] = {i.id: {} for i in batch}
        for modality in ("image", "audio"):
            if getattr(encoders, modality) is None:
                continue
            loader = _media_loader(modality, limits)
            ok, loaded = _load_media(batch, modality, loader, batch_failed)
            try:
                tags = _encode_media(store, encoders, modality, ok, loaded, batch_size)
            except ValueError as e:  # a decode problem only visible inside the model
                batch_failed.extend(RowError(i.id, modality, str(e)) for i in ok)
                continue
            for item_id, labels in tags.items():
                media_tags[item_id][f"{modality}_tags"] = json.dumps(labels)
        failed_ids = {e.id for e in batch_failed}
        texts = [i.text() for i in batch]
        vecs = encoders.text.encode(texts, batch_size=batch_size)
        metas = [
            item_metadata(i)
            | media_tags[i.id]
            | {
                "hash": "" if i.id in failed_ids else hashes[i.id],
                "has_image": bool(i.image),
                "has_audio": bool(i.audio),
            }
            | ({"source_dir": source} if source else {})
            for i in batch
        ]
        store.upsert(
            "text", [i.id for i in batch], vecs, metas, encoder_config=encoders.text.get_config()
        )
        for item in batch:
            if item.id in existing:
                report.updated += 1
            else:
                report.added += 1
        report.failed.extend(batch_failed)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return report


def ingest_catalogue(
    path: str | Path,
    store: VectorStore,
    encoders: Encoders,
    *,
    batch_size: int = 32,
    show_progress: bool = False,
    limits: IngestConfig | None = None,
    media_root: str | Path | None = None,
) -> IngestReport:
    """Read a catalogue file and ingest every good row; bad rows land in the report.

    Args:
        media_root: when given (uploads), media paths outside this folder are never opened:
            the field is dropped and reported as "not found or not readable", the same words
            as for a missing file, so a report cannot tell whether a path exists.
    """
    items, errors = read_catalogue(path)
    if media_root is not None:
        items = [_confine_media(i, Path(media_root), errors) for i in items]
    return ingest_items(
        items,
        store,
        encoders,
        batch_size=batch_size,
        show_progress=show_progress,
        failed=errors,
        limits=limits,
        source=Path(path).expanduser().resolve().parent,
    )


def _confine_media(item: Item, root: Path, errors: list[RowError]) -> Item:
    """`item` without any local media path that resolves outside `root` (each one reported)."""
    for modality in ("image", "audio"):
        path = getattr(item, modality)
        if not path or "://" in path:
            continue
        try:
            Path(path).resolve().relative_to(root.resolve())
        except (ValueError, OSError, RuntimeError):
            errors.append(RowError(item.id, modality, f"{modality} not found or not readable"))
            item = dataclasses.replace(item, **{modality: None})
    return item


def item_sources(store: VectorStore) -> dict[str, str]:
    """Item id -> the catalogue folder it was ingested from (items ingested with a source)."""
    ids, _, metas = store.get("text", include_vectors=False)
    return {i: m["source_dir"] for i, m in zip(ids, metas, strict=True) if m.get("source_dir")}


def items_from_store(store: VectorStore) -> dict[str, Item]:
    """Rebuild the catalogue from the store's metadata, so the agent needs no source file."""
    ids, _, metas = store.get("text", include_vectors=False)
    out: dict[str, Item] = {}
    for item_id, meta in zip(ids, metas, strict=True):
        raw = json.loads(meta["item"])
        raw["tags"] = tuple(raw.get("tags") or ())
        out[item_id] = Item(**raw)
    return out
