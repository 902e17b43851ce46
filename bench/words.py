"""Search by word: how well words find photos, and how fast, over HTTP.

Run: python bench/words.py [--photos PATH] [--points 100000] [--requests 300]

The photos (default ../shared/data/photos: 600 ImageNet photos, one per class,
named <wnid>_<name>.JPEG) are copied under random names into one folder, so
nothing of their class reaches the index but their pixels; the names are kept
here as the truth. The copy is indexed with build(), served with the real
`pixscape serve`, and asked over HTTP:

  class_recall_at_10     share of photos found in the top 10 for their own class's
                         name (GET /api/search?q=<name>&k=10)
  general_precision      mean over GENERAL words of precision@20 (or @relevant when
                         the collection holds fewer than 20): a result is right when
                         WordNet puts its photo's class under the word
  general_precision_min  the worst of those words (each word is a line too)
  words_p50_ms, words_p99_ms  client wall time of the class-name queries (n=600)
  words_100k_p50_ms, words_100k_p99_ms
                         the same over a synthetic snapshot of --points images whose
                         concept scores are the real photos' rows drawn with
                         replacement (--requests queries: class names and GENERAL
                         words, one keep-alive connection)
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
from _common import DEFAULT_PHOTOS, emit, median, note, percentile, photo_files, serve

BENCH = "words"
GENERAL = (
    "dog",
    "cat",
    "bird",
    "fish",
    "snake",
    "insect",
    "food",
    "fruit",
    "vegetable",
    "vehicle",
    "boat",
    "clothing",
    "tool",
    "building",
    "furniture",
    "musical instrument",
    "container",
    "reptile",
)


def neutral_copy(photos: list[Path], dest: Path) -> dict[str, str]:
    """Copy each photo to dest/<random>.jpg; returns copy name -> the photo's wnid."""
    dest.mkdir(parents=True)
    truth = {}
    for src in photos:
        name = f"{secrets.token_hex(8)}.jpg"
        shutil.copyfile(src, dest / name)
        truth[name] = src.name.split("_", 1)[0]
    return truth


def ask(client: httpx.Client, q: str, k: int) -> tuple[list[str], float]:
    t = time.perf_counter()
    res = client.get("/api/search", params={"q": q, "k": k})
    ms = (time.perf_counter() - t) * 1000
    res.raise_for_status()
    return [r["path"] for r in res.json()["results"]], ms


def quality(base: str, truth: dict[str, str]) -> None:
    from indexer.concepts import Concepts

    vocabulary = Concepts.load()
    at = {wnid: i for i, wnid in enumerate(vocabulary.synsets)}
    hits, times = 0, []
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, wnid in truth.items():
            found, ms = ask(client, vocabulary.names[at[wnid]], 10)
            hits += name in found
            times.append(ms)
        emit(BENCH, "class_recall_at_10", round(hits / len(truth), 4), "share", n=len(truth))
        for q in (50, 99):
            emit(BENCH, f"words_p{q}_ms", round(percentile(times, q), 2), "ms", n=len(truth))
        precisions = []
        for word in GENERAL:
            reach = set(vocabulary.classes(word))
            relevant = sum(at[w] in reach for w in truth.values())
            k = min(20, relevant)
            if k == 0:
                note(f"{word}: no photo of it in the collection, left out")
                continue
            found, _ = ask(client, word, k)
            right = sum(at[truth[p]] in reach for p in found)
            precisions.append(right / k)
            emit(
                BENCH, "precision", round(right / k, 4), "share", word=word, k=k, relevant=relevant
            )
        emit(
            BENCH,
            "general_precision",
            round(float(np.mean(precisions)), 4),
            "share",
            n=len(precisions),
        )
        emit(BENCH, "general_precision_min", round(min(precisions), 4), "share", n=len(precisions))


def synthetic(data: Path, real: Path, n: int) -> None:
    """A published snapshot of `n` images whose top concepts are rows of `real`'s."""
    import faiss

    from indexer import index as faiss_index
    from indexer.catalog import CatalogRow
    from indexer.concept_scores import TOP_K
    from indexer.manifest import (
        CONCEPT_CLASSES_FILE,
        CONCEPT_PROBS_FILE,
        CollectionEntry,
        ConceptsEntry,
        Contents,
        ModelEntry,
    )
    from indexer.snapshot import npy_bytes, open_snapshot, publish, write_snapshot

    snap = open_snapshot(real)
    assert snap.concepts is not None
    rng = np.random.default_rng(0)
    pick = rng.integers(0, snap.count, n)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    rows = [CatalogRow(i, f"img/{i}.jpg", f"{i:064x}", 1, 1, 1, "JPEG", None) for i in range(n)]
    written = write_snapshot(
        data,
        rows=rows,
        vectors=vectors,
        index_bytes=faiss_index.to_bytes(index),
        model_path=snap.model_path,
        thumbnails=[b""] * n,
        contents=Contents(
            model=ModelEntry(id="synthetic", fingerprint="0", input_size=224, dim=8),
            index_type="Flat",
            collection=CollectionEntry(root=str(data), files_seen=n),
            concepts=ConceptsEntry(vocabulary="imagenet-1k", classes=1000, top_k=TOP_K),
        ),
        extra_files={
            CONCEPT_CLASSES_FILE: npy_bytes(np.asarray(snap.concepts.classes)[pick]),
            CONCEPT_PROBS_FILE: npy_bytes(np.asarray(snap.concepts.probs)[pick]),
        },
    )
    publish(data, written)


def latency_at_scale(base: str, requests: int, n: int) -> None:
    from indexer.concepts import Concepts

    vocabulary = Concepts.load()
    rng = np.random.default_rng(1)
    words = [*GENERAL, *(vocabulary.names[i] for i in rng.integers(0, 1000, requests))]
    words = words[:requests]
    with httpx.Client(base_url=base, timeout=60) as client:
        ask(client, "dog", 20)  # the first word request builds the inverted file
        times = [ask(client, w, 20)[1] for w in words]
    for q in (50, 99):
        emit(
            BENCH, f"words_100k_p{q}_ms", round(percentile(times, q), 2), "ms", n=n, runs=len(times)
        )
    emit(BENCH, "words_100k_mean_ms", round(float(np.mean(times)), 2), "ms", n=n, runs=len(times))
    note(f"median {median(times):.1f} ms over {len(times)} words at {n:,} images")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    from indexer.build import build

    with tempfile.TemporaryDirectory(prefix="pixscape-words-") as tmp:
        work = Path(tmp)
        truth = neutral_copy(photo_files(args.photos), work / "collection")
        note(f"indexing {len(truth)} photos under random names")
        build(work / "collection", work / "data")
        with serve(work / "data", log_dir=work) as base:
            quality(base, truth)
        big = Path(
            tempfile.mkdtemp(
                prefix="pixscape-words-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
            )
        )
        try:
            note(f"writing a synthetic snapshot of {args.points:,} images")
            synthetic(big, work / "data", args.points)
            with serve(big, timeout=180, log_dir=work) as base:
                latency_at_scale(base, args.requests, args.points)
        finally:
            shutil.rmtree(big, ignore_errors=True)


if __name__ == "__main__":
    main()
