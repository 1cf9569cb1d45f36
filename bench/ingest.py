"""Ingest throughput per modality: encoder-only items/s and full ingest (encode + Chroma upsert).

Usage: python -m bench.ingest [--device cpu|cuda] [--threads 1] [--n 64]

Runs on the demo catalogue's images and sounds (built into a temp dir) and MovieLens-style
texts. Prints model names, items/s, and the ratio of full-ingest to encoder-only speed
measured in the same run (how much Chroma and file decoding cost on top of the models).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _rate(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (first call builds caches, compiles kernels)
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=64, help="items per modality")
    ap.add_argument("--out", help="write results JSON here")
    args = ap.parse_args()

    from retrieval.catalogue import read_catalogue
    from retrieval.config import EncoderConfig
    from retrieval.datasets.media.build import build_media_catalogue
    from retrieval.encoders.audio import YAMNET_SR, load_audio
    from retrieval.encoders.image import load_image
    from retrieval.ingest import Encoders, ingest_items
    from retrieval.store import VectorStore

    tmp = Path(tempfile.mkdtemp(prefix="fusionrec-bench-"))
    build_media_catalogue(tmp / "demo")  # media packages come from the cache after one fetch
    items, _ = read_catalogue(tmp / "demo" / "catalogue.jsonl")
    enc = Encoders.from_config(EncoderConfig(device=args.device, num_threads=args.threads))
    images = [i for i in items if i.image][: args.n]
    sounds = [i for i in items if i.audio][: args.n]
    texts = [i.text() for i in items][: args.n]
    results: dict[str, dict[str, float | str]] = {}

    def row(name: str, model: str, n: int, encode_fn, ingest_items_list) -> None:  # type: ignore[no-untyped-def]
        enc_rate = _rate(n, encode_fn)
        counter = {"k": 0}

        def full() -> None:
            counter["k"] += 1
            store = VectorStore.open(tmp / f"store-{name}-{counter['k']}")
            only = Encoders(
                text=enc.text,
                image=enc.image if name == "image" else None,
                audio=enc.audio if name == "audio" else None,
            )
            ingest_items(ingest_items_list, store, only, batch_size=32)

        full_rate = _rate(n, full)
        results[name] = {
            "model": model,
            "n": n,
            "encode_items_per_s": round(enc_rate, 2),
            "ingest_items_per_s": round(full_rate, 2),
            "ingest_vs_encode": round(full_rate / enc_rate, 3),
        }

    row(
        "text",
        enc.text.get_config().get("model", enc.text.name),
        len(texts),
        lambda: enc.text.encode(texts, batch_size=32),
        items[: args.n],
    )
    row(
        "image",
        enc.image.name,
        len(images),
        lambda: enc.image.encode([load_image(i.image) for i in images], batch_size=32),
        images,
    )
    row(
        "audio",
        enc.audio.name,
        len(sounds),
        lambda: enc.audio.encode([(load_audio(i.audio), YAMNET_SR) for i in sounds], batch_size=32),
        sounds,
    )

    print(
        f"device={args.device} threads={args.threads} "
        f"cpu={platform.processor() or platform.machine()} "
        f"cores={os.cpu_count()}"
    )
    print(
        f"{'modality':<8} {'model':<28} {'n':>4} {'encode/s':>9} {'ingest/s':>9} "
        f"{'ingest/encode':>14}"
    )
    for name, r in results.items():
        print(
            f"{name:<8} {str(r['model'])[-28:]:<28} {r['n']:>4} {r['encode_items_per_s']:>9} "
            f"{r['ingest_items_per_s']:>9} {r['ingest_vs_encode']:>14}"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"device": args.device, "threads": args.threads, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
