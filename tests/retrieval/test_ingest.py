"""Ingest into a real Chroma store with the real encoders: idempotent, resumable, per-row errors."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from retrieval.catalogue import Item
from retrieval.errors import StoreError
from retrieval.ingest import Encoders, ingest_catalogue, ingest_items, items_from_store
from retrieval.store import VectorStore


def _tone(path: Path, freq: float, seconds: float = 2.0, amp: float = 0.5) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


@pytest.fixture()
def catalogue(tmp_path: Path, skimage_photo: Path) -> Path:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(skimage_photo / "coffee.png", media / "coffee.png")
    shutil.copy(skimage_photo / "chelsea.png", media / "cat.png")
    (media / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    _tone(media / "beep.wav", 1000)
    _tone(media / "silent.wav", 440, amp=0.0)
    rows = [
        {
            "id": "coffee",
            "title": "Morning espresso",
            "description": "A photo of a cup of coffee.",
            "image": "media/coffee.png",
        },
        {
            "id": "cat",
            "title": "Chelsea the cat",
            "description": "A tabby cat.",
            "image": "media/cat.png",
        },
        {
            "id": "broken",
            "title": "Broken picture",
            "description": "Corrupt file.",
            "image": "media/broken.png",
        },
        {
            "id": "beep",
            "title": "Test tone",
            "description": "A 1 kHz beep.",
            "audio": "media/beep.wav",
        },
        {
            "id": "silent",
            "title": "Nothing",
            "description": "Silence.",
            "audio": "media/silent.wav",
        },
        {
            "id": "gone",
            "title": "Missing image",
            "description": "File not there.",
            "image": "media/nope.png",
        },
        {"id": "cat", "title": "Duplicate cat", "description": "Same id again."},
    ]
    path = tmp_path / "catalogue.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_ingest_reports_bad_rows_by_id_and_keeps_the_rest(
    catalogue: Path, tmp_path: Path, encoders: Encoders
) -> None:
    store = VectorStore.open(tmp_path / "store")
    report = ingest_catalogue(catalogue, store, encoders, batch_size=4)
    failed = {(e.id, e.field) for e in report.failed}
    assert ("broken", "image") in failed
    assert ("gone", "image") in failed
    assert ("silent", "audio") in failed
    assert ("cat", "id") in failed  # duplicate row
    assert any("broken.png" in e.error for e in report.failed if e.id == "broken")
    assert report.added == 6
    assert store.count("text") == 6  # every unique row's text went in, bad media or not
    assert store.count("image") == 2 and store.count("image-text") == 2
    assert store.count("audio") == 1
    items = items_from_store(store)
    assert items["coffee"].title == "Morning espresso"
    _, _, metas = store.get("image", ["coffee"], include_vectors=False)
    labels = [lab for lab, _ in json.loads(metas[0]["image_tags"])]
    assert any("espresso" in lab or "cup" in lab for lab in labels), labels


def test_ingest_twice_is_idempotent_and_retries_only_failures(
    catalogue: Path, tmp_path: Path, encoders: Encoders
) -> None:
    store = VectorStore.open(tmp_path / "store")
    first = ingest_catalogue(catalogue, store, encoders)
    counts = {s: store.count(s) for s in ("text", "image", "audio", "image-text", "audio-text")}
    second = ingest_catalogue(catalogue, store, encoders)
    assert {s: store.count(s) for s in counts} == counts
    assert second.added == 0
    # items whose media failed are retried (and reported again); the rest are skipped
    assert second.skipped == first.added - 3 and second.updated == 3
    assert {e.id for e in second.failed} == {e.id for e in first.failed}


def test_interrupted_ingest_resumes(tmp_path: Path, encoders: Encoders) -> None:
    items = [Item(id=f"i{n}", title=f"Item {n}", description=f"number {n}") for n in range(6)]
    store = VectorStore.open(tmp_path / "store")

    class Interrupt(Exception):
        pass

    calls = {"n": 0}
    real_encode = encoders.text.encode

    def flaky(texts, **kw):  # error path only: the second batch dies mid-run
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt
        return real_encode(texts, **kw)

    partial = Encoders(text=encoders.text)
    object.__setattr__(partial.text, "encode", flaky)
    try:
        with pytest.raises(Interrupt):
            ingest_items(items, store, partial, batch_size=2)
    finally:
        del partial.text.encode  # restore the class method
    assert store.count("text") == 2
    report = ingest_items(items, store, Encoders(text=encoders.text), batch_size=2)
    assert (report.added, report.skipped) == (4, 2)
    assert store.count("text") == 6


def test_image_and_audio_models_load_on_first_ingest_not_at_start_up(
    tmp_path: Path, skimage_photo: Path
) -> None:
    from retrieval.config import EncoderConfig
    from retrieval.encoders import create_encoder
    from retrieval.encoders.image import load_image

    encoders = Encoders.from_config(EncoderConfig(num_threads=1))
    assert not encoders.loaded("image") and not encoders.loaded("audio")
    encoders.text.encode_query(["a cup of coffee"])  # the serving path needs text only
    assert not encoders.loaded("image") and not encoders.loaded("audio")

    store = VectorStore.open(tmp_path / "store")
    photo = str(skimage_photo / "coffee.png")
    item = Item(id="coffee", title="Morning espresso", description="A cup.", image=photo)
    report = ingest_items([item], store, encoders)
    assert (report.added, report.failed) == (1, [])
    assert encoders.loaded("image") and encoders.loaded("audio")
    # the very encoders an eager build makes, so vectors and content hashes are unchanged
    assert encoders.image is create_encoder("efficientnet-lite0", device="cpu", num_threads=1)
    assert encoders.audio is create_encoder("yamnet", device="cpu", num_threads=1)
    assert store.count("image") == 1 and store.count("image-text") == 1
    _, stored, _ = store.get("image", ["coffee"])
    np.testing.assert_allclose(stored[0], encoders.image.encode([load_image(photo)])[0], atol=1e-5)


def test_missing_media_weights_fail_clearly_when_first_needed(tmp_path: Path) -> None:
    from retrieval.config import EncoderConfig
    from retrieval.errors import ModelLoadError, UnknownBackendError

    with pytest.raises(UnknownBackendError, match="no-such-model"):  # a config typo: at once
        Encoders.from_config(EncoderConfig(image="no-such-model", num_threads=1))
    encoders = Encoders.from_config(EncoderConfig(image="open-clip", audio="none", num_threads=1))
    assert not encoders.loaded("image")  # no clip_weights, yet start-up succeeds
    item = Item(id="a", title="A", description="Plain text.")
    with pytest.raises(ModelLoadError, match="clip_weights"):
        ingest_items([item], VectorStore.open(tmp_path / "store"), encoders)


def test_store_refuses_a_different_encoder(tmp_path: Path) -> None:
    store = VectorStore.open(tmp_path / "store")
    v = np.eye(3, dtype=np.float32)
    store.upsert("text", ["a", "b", "c"], v, [{}, {}, {}], encoder_config={"name": "one"})
    with pytest.raises(StoreError, match="built with encoder"):
        store.upsert("text", ["d"], v[:1], [{}], encoder_config={"name": "other"})
    hits = store.query("text", v[0], n=2, exclude_ids=["a"])[0]
    assert [h.id for h in hits] and "a" not in [h.id for h in hits]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_client_against_a_real_chroma_server(tmp_path: Path) -> None:
    chroma = Path(sys.executable).parent / "chroma"
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(tmp_path / "srv"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.time() + 60
        store = None
        while time.time() < deadline:
            try:
                store = VectorStore.open(host="127.0.0.1", port=port)
                break
            except StoreError:
                time.sleep(0.5)
        assert store is not None, "chroma server did not start"
        v = np.eye(4, dtype=np.float32)
        store.upsert("text", list("abcd"), v, [{"title": t} for t in "ABCD"])
        hits = store.query("text", v[2], n=1)[0]
        assert hits[0].id == "c" and hits[0].metadata["title"] == "C"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
