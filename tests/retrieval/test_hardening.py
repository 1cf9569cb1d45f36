"""Issue 11: memory bounded by the work (not by file size) and one ingest at a time per store.

Memory is measured with tracemalloc, which sees numpy's and Python's allocations: the old
code read whole files (2 GB "images" were hashed with `read_bytes`, a 2-hour FLAC was decoded
whole before being cut to 10 minutes), so these peaks grew with the file; now they do not.
The end-to-end peak RSS of hostile ingests is printed by `python -m bench.memory`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from retrieval.catalogue import Item
from retrieval.config import IngestConfig
from retrieval.errors import StoreError
from retrieval.ingest import Encoders, content_hash, ingest_items, ingest_lock
from retrieval.store import VectorStore


def _peak_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak traced allocation while `fn` runs, and what it returned (or the exception)."""
    tracemalloc.start()
    try:
        try:
            out: Any = fn()
        except Exception as e:  # noqa: BLE001 - the caller inspects it
            out = e
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def _flac(path: Path, seconds: float, *, rate: int = 48_000, channels: int = 2, tone=None) -> Path:  # type: ignore[no-untyped-def]
    """Write a FLAC block by block (the test itself never holds the whole signal)."""
    block = rate * 10
    with sf.SoundFile(path, "w", rate, channels, format="FLAC") as fh:
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            x = np.zeros((n, channels), dtype=np.float32)
            if tone is not None:
                t = (start + np.arange(n)) / rate
                x[:] = (0.5 * np.sin(2 * np.pi * tone * t))[:, None]
            fh.write(x)
    return path


def test_long_silent_audio_is_not_decoded_past_the_cap(tmp_path: Path) -> None:
    """5 minutes of 48 kHz stereo silence, 10 s used: memory follows the 10 s, not the file."""
    from retrieval.encoders.audio import load_audio

    path = _flac(tmp_path / "silent.flac", 300)
    peak, err = _peak_bytes(lambda: load_audio(path, max_seconds=10.0))
    assert isinstance(err, ValueError) and "silent" in str(err)
    whole = 300 * 48_000 * 2 * 4  # the float32 decode of the whole file: 115 MB
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB (whole file is {whole / 2**20:.0f} MB)"


def test_streamed_decode_equals_decoding_the_used_part_at_once(tmp_path: Path) -> None:
    from scipy.signal import resample_poly

    from retrieval.encoders.audio import load_audio

    path = _flac(tmp_path / "tone.flac", 47.3, rate=44_100, tone=440.0)
    wave = load_audio(path, max_seconds=31.0)
    head, rate = sf.read(path, frames=31 * 44_100, dtype="float32", always_2d=True)
    expected = np.clip(resample_poly(head.mean(axis=1), 160, 441), -1, 1).astype(np.float32)
    assert rate == 44_100 and wave.shape == expected.shape == (31 * 16_000,)
    np.testing.assert_allclose(wave, expected, atol=1e-6)
    assert np.array_equal(load_audio((head, rate)), expected)  # arrays take the same path


def test_media_hash_reads_in_chunks(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.png"
    with sparse.open("wb") as fh:
        fh.truncate(64 * 2**20)  # 64 MB of holes: costs no disk
    item = Item(id="x", title="X", image=str(sparse))
    peak, digest = _peak_bytes(lambda: content_hash(item, {}))
    assert isinstance(digest, str) and len(digest) == 64
    assert peak < 8 * 2**20, f"hashing a 64 MB file peaked at {peak / 2**20:.1f} MB"
    # over the size limit the file is not read at all, and the hash still tracks changes
    peak, capped = _peak_bytes(lambda: content_hash(item, {}, max_bytes=2**20))
    assert peak < 2**20 and capped != digest


def test_oversized_media_is_refused_before_reading(tmp_path: Path, encoders: Encoders) -> None:
    """A 2 GB sparse file used as an image (and as audio) is a row error naming the limit."""
    big = tmp_path / "huge.png"
    with big.open("wb") as fh:
        fh.truncate(2 * 2**30)
    loud = tmp_path / "big.wav"
    with loud.open("wb") as fh:
        fh.truncate(300 * 2**20)
    store = VectorStore.open(tmp_path / "store")
    encoders.signature()  # load the models outside the measurement
    items = [
        Item(id="img", title="Huge image", image=str(big)),
        Item(id="aud", title="Huge sound", audio=str(loud)),
        Item(id="ok", title="Fine"),
    ]
    peak, report = _peak_bytes(
        lambda: ingest_items(items, store, encoders)  # the default limit: 200 MB
    )
    errors = {e.id: e.error for e in report.failed}
    assert set(errors) == {"img", "aud"}, errors
    assert "the limit is 200 MB" in errors["img"] and "2,048 MB" in errors["img"]
    assert "the limit is 200 MB" in errors["aud"]
    assert report.added == 3  # every row's text went in
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"


def test_pil_decompression_bomb_limit_is_checked_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from retrieval.encoders.image import load_image

    path = tmp_path / "grey.png"
    Image.new("L", (100, 100), 128).save(path)
    assert load_image(path).size == (100, 100)
    # 10,000 pixels: over PIL's limit (which only warns below twice the limit); refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)
    with pytest.raises(ValueError, match=r"exceeds limit of 6000|over 6,000"):
        load_image(path)
    with pytest.raises(ValueError, match="the limit is 0 MB"):
        load_image(path, max_bytes=100)


class _Gate:
    """A text encoder wrapper that blocks inside `encode` until released (an ingest in flight)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.name, self.modality, self.dim = inner.name, inner.modality, inner.dim

    def encode(self, *args: Any, **kw: Any) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(60)
        return self.inner.encode(*args, **kw)

    def get_config(self) -> dict[str, Any]:
        return self.inner.get_config()


def test_second_ingest_into_the_same_store_says_another_is_running(
    tmp_path: Path, encoders: Encoders
) -> None:
    store = VectorStore.open(tmp_path / "store")
    items = [Item(id=f"i{n}", title=f"Item {n}") for n in range(3)]
    gate = _Gate(encoders.text)
    first: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: first.update(r=ingest_items(items, store, Encoders(text=gate)))
    )
    worker.start()
    try:
        assert gate.entered.wait(60)
        with pytest.raises(StoreError, match="another ingest into this store is running"):
            ingest_items(items, store, Encoders(text=encoders.text))
    finally:
        gate.release.set()
        worker.join(60)
    assert first["r"].added == 3
    # with a wait configured the second one waits its turn, then finds the work done
    gate2 = _Gate(encoders.text)
    changed = [Item(id=f"i{n}", title=f"Item {n}", description="new") for n in range(3)]
    second: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: second.update(r=ingest_items(changed, store, Encoders(text=gate2)))
    )
    worker.start()
    assert gate2.entered.wait(60)
    threading.Timer(1.0, gate2.release.set).start()
    waited = ingest_items(
        changed, store, Encoders(text=encoders.text), limits=IngestConfig(lock_wait_s=60)
    )
    worker.join(60)
    assert second["r"].updated == 3 and waited.skipped == 3 and waited.updated == 0


def test_lock_holds_across_processes(tmp_path: Path, encoders: Encoders) -> None:
    store = VectorStore.open(tmp_path / "store")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from filelock import FileLock
                with FileLock({str(store.lock_path)!r}):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="another ingest"):
            ingest_items([Item(id="a", title="A")], store, Encoders(text=encoders.text))
    finally:
        holder.communicate("\n", timeout=30)
    with ingest_lock(store):  # free again once the other process is done
        pass


# ---- issue 11 #5 / #6: `fusionrec eval --interactions/--items` on imperfect files ---------------
def _eval(inter: Path, items: Path, tmp_path: Path) -> dict[str, Any]:
    from evaluation.retrieval import run_eval
    from tests.evaluation.test_retrieval_eval import HashingTextEncoder

    return run_eval(
        interactions=inter, items=items, text_encoder=HashingTextEncoder(), cache_dir=tmp_path
    )


def _metrics(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        m: {k: v for k, v in row.items() if k != "seconds"} for m, row in report["models"].items()
    }


def test_eval_with_duplicated_rows_deduplicates_and_says_so(tmp_path: Path) -> None:
    """Duplicated rows put each held-out item in training too: every metric read 0.0000."""
    import pandas as pd

    from tests.evaluation.test_retrieval_eval import _files

    inter, items = _files(tmp_path)
    clean = _eval(inter, items, tmp_path)
    df = pd.read_csv(inter)
    pd.concat([df, df]).to_csv(tmp_path / "dup.csv", index=False)
    dup = _eval(tmp_path / "dup.csv", items, tmp_path)
    assert dup["models"]["hybrid"]["hr@10"] > 0
    assert _metrics(dup) == _metrics(clean)
    assert dup["data_notes"]["duplicate_interactions_removed"] == len(df)


def test_eval_keeps_items_without_titles_and_drops_a_few_unknown_ids(tmp_path: Path) -> None:
    """MovieLens latest-small has 7 titleless movies; one bad row must not lose the run."""
    import pandas as pd

    from retrieval.datasets.movielens import load_user_data
    from tests.evaluation.test_retrieval_eval import _files

    inter, items = _files(tmp_path)
    cat = pd.read_csv(items)
    cat.loc[[3, 7, 11], "title"] = ""
    cat.to_csv(items, index=False)
    df = pd.read_csv(inter)
    stray = [{"user_id": "u0", "item_id": "gone", "rating": 3, "timestamp": 2}]
    pd.concat([df, pd.DataFrame(stray)]).to_csv(inter, index=False)
    data = load_user_data(inter, items)
    assert data.notes() == {
        "dropped_users": 1,
        "unknown_item_interactions_removed": 1,
        "items_with_placeholder_title": 3,
    }
    assert {i.id: i.title for i in data.items}["m3"] == "item m3"
    report = _eval(inter, items, tmp_path)
    assert report["users"] == 40 and report["models"]["hybrid"]["hr@10"] > 0
    assert report["data_notes"]["items_with_placeholder_title"] == 3
