"""Large indexes: IVF + exact re-ranking next to exact search, on synthetic vectors.

Run: python bench/large_index.py [--sizes 1000000] [--queries 200] [--flat-queries 50]
                                 [--knn-rows 2000] [--seed 0] [--workdir DIR] [--skip-flat]

For each size N, N synthetic clustered unit vectors of the model's dimension (1280)
are written to a memory-mapped vectors.npy in a temporary folder, a chunk at a
time. Clusters: N/250 Gaussian centres of uneven sizes around a common mean
direction (random pairs ~0.2 cosine, like the non-negative CNN features), points
spread by a 64-d low-rank component with a decaying spectrum plus isotropic
noise (10 nearest neighbours ~0.72 similar, the 10th and 11th ~0.001 apart: a
hard case). Queries are fresh samples of the same clusters, not in the
collection. One JSON line per figure; every IVF line carries the index type,
nprobe and rerank factor the build chose.

build    indexer.index.build_with_manifest(vectors) (its manifest entry is in the
         ivf_build_s line): ivf_build_s; ivf_build_peak_anon_mb, the largest
         anonymous RSS sampled every 20 ms (what the build needs);
         ivf_build_peak_rss_mb, VmHWM, which also counts mapped vectors.npy pages
         (evictable page cache); ivf_build_recall_at_10 (the manifest's held-out
         figure); ivf_index_mb (index.faiss on disk).
serve    a fresh process opens index.faiss and vectors.npy as the service does
         (faiss.read_index with indexer.index.READ_FLAGS, np.load mmap_mode="r"):
         ivf_open_s; ivf_open_anon_mb and ivf_serving_anon_mb (anonymous RSS the
         open, then the queries, added); ivf_serving_rss_mb (all resident pages,
         the touched parts of the mapped files included); ivf_query_p50_ms /
         ivf_query_p99_ms (indexer.neighbours.search, one query at a time, k=10,
         re-ranked against the mapped vectors, after 10 warm-ups);
         ivf_recall_at_10 (the fresh queries, vs exact search over all N);
         knn_rows_per_s and knn_recall_at_30 (indexer.neighbours.knn_rows, k=30, on
         --knn-rows rows, recall on 200 of them: the build's k-NN pass).
flat     exact FAISS IndexFlatIP on the same vectors: flat_build_s, flat_index_mb
         (N x 1280 x 4 bytes), flat_build_peak_anon_mb, flat_query_p50_ms /
         flat_query_p99_ms (--flat-queries single queries), speedup_p50.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _common import emit, note, percentile

from indexer import index as fi
from indexer import neighbours

BENCH = "large_index"
DIM = 1280
RANK = 64
K = 10
KNN_K = 30  # neighbours per image in the build's k-NN pass (indexer.config.KNN_K)
CHUNK = 50_000


# ---------------------------------------------------------------- data


class Clusters:
    """The generative model: every sample() call draws from the same clusters."""

    def __init__(self, n: int, seed: int, dim: int = DIM) -> None:
        rng = np.random.default_rng(seed)
        self.count = max(8, n // 250)
        mean = rng.standard_normal(dim)
        self.mean = (mean / np.linalg.norm(mean)).astype(np.float32)
        self.centres = (rng.standard_normal((self.count, dim)) / np.sqrt(dim)).astype(np.float32)
        self.basis = (rng.standard_normal((RANK, dim)) / np.sqrt(dim)).astype(np.float32)
        self.spectrum = (np.arange(1, RANK + 1) ** -0.5).astype(np.float32)
        self.scales = rng.lognormal(0, 0.3, (self.count, RANK)).astype(np.float32)
        weights = rng.lognormal(0, 1.0, self.count)
        self.weights = weights / weights.sum()

    def sample(self, rng: np.random.Generator, m: int) -> np.ndarray:
        labels = rng.choice(self.count, m, p=self.weights)
        z = rng.standard_normal((m, RANK), dtype=np.float32) * self.spectrum * self.scales[labels]
        noise = rng.standard_normal((m, self.mean.shape[0]), dtype=np.float32)
        # Squared norms ~0.5 (mean), 1 (centre), 0.6 (low rank), 0.4 (isotropic).
        x = 0.707 * self.mean + self.centres[labels] + 0.327 * (z @ self.basis)
        x += 0.632 / np.sqrt(self.mean.shape[0]) * noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def write_vectors(path: Path, clusters: Clusters, n: int, seed: int) -> None:
    rng = np.random.default_rng([seed, 1])  # a stream apart from the clusters' own
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, CHUNK):
        out[start : start + CHUNK] = clusters.sample(rng, min(CHUNK, n - start))
    out.flush()
    del out  # unmap: later phases see only the pages they touch


# ---------------------------------------------------------------- memory


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """{"anon_mb", "rss_mb"} peaks of the block: RssAnon sampled every 20 ms,
    and VmHWM after resetting it (clear_refs 5, Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")
    out = {"anon_mb": 0.0, "rss_mb": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            out["anon_mb"] = max(out["anon_mb"], status_kb("RssAnon") / 1024)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        done.set()
        sampler.join()
        out["anon_mb"] = round(max(out["anon_mb"], status_kb("RssAnon") / 1024), 1)
        out["rss_mb"] = round(status_kb("VmHWM") / 1024, 1)


# ---------------------------------------------------------------- phases


def latencies(fn: Any, queries: np.ndarray, warmup: int = 10) -> list[float]:
    for q in queries[:warmup]:
        fn(q[None])
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def context(n: int, args: argparse.Namespace, entry: dict[str, Any]) -> dict[str, Any]:
    kind = {"type": entry["type"], "nprobe": entry.get("nprobe"), "rerank": entry.get("rerank")}
    return {"n": n, "dim": DIM, "seed": args.seed, **kind, "runs": 1}


def build_phase(n: int, args: argparse.Namespace, workdir: Path) -> None:
    """indexer.index.build_with_manifest over the memory-mapped vectors; writes
    index.faiss and entry.json into `workdir`."""
    with peak_memory() as mem:
        t0 = time.perf_counter()
        vectors = np.load(workdir / "vectors.npy", mmap_mode="r")
        index, entry = fi.build_with_manifest(vectors, seed=args.seed)
        build_s = time.perf_counter() - t0
    note(f"built {entry}")
    ivf = context(n, args, entry)
    emit(BENCH, "ivf_build_s", round(build_s, 1), "s", **ivf, entry=entry)
    emit(BENCH, "ivf_build_peak_anon_mb", mem["anon_mb"], "MB", **ivf)
    emit(BENCH, "ivf_build_peak_rss_mb", mem["rss_mb"], "MB", **ivf)
    emit(BENCH, "ivf_build_recall_at_10", entry.get("recall_at_10", 1.0), "recall", **ivf)
    faiss.write_index(index, str(workdir / "index.faiss"))
    size_mb = round((workdir / "index.faiss").stat().st_size / 2**20, 1)
    emit(BENCH, "ivf_index_mb", size_mb, "MB", **ivf)
    (workdir / "entry.json").write_text(json.dumps(entry))


def serve_phase(n: int, args: argparse.Namespace, workdir: Path) -> None:
    """In a fresh process (so the build's freed heap does not count): open the
    snapshot files as the service does and query them. Writes serve.json."""
    entry = json.loads((workdir / "entry.json").read_text())
    ivf = context(n, args, entry)
    queries = Clusters(n, args.seed).sample(np.random.default_rng([args.seed, 2]), args.queries)
    anon_before = status_kb("RssAnon")
    t0 = time.perf_counter()
    index = faiss.read_index(str(workdir / "index.faiss"), fi.READ_FLAGS)
    vectors = np.load(workdir / "vectors.npy", mmap_mode="r")
    emit(BENCH, "ivf_open_s", round(time.perf_counter() - t0, 3), "s", **ivf)
    opened_mb = round((status_kb("RssAnon") - anon_before) / 1024, 1)
    emit(BENCH, "ivf_open_anon_mb", opened_mb, "MB", **ivf)
    q = {**ivf, "queries": len(queries), "k": K}
    lat = latencies(lambda x: neighbours.search(index, x, K, vectors), queries)
    emit(BENCH, "ivf_query_p50_ms", round(percentile(lat, 50), 2), "ms", **q)
    emit(BENCH, "ivf_query_p99_ms", round(percentile(lat, 99), 2), "ms", **q)
    serving_mb = round((status_kb("RssAnon") - anon_before) / 1024, 1)
    emit(BENCH, "ivf_serving_anon_mb", serving_mb, "MB", **q)
    emit(BENCH, "ivf_serving_rss_mb", round(status_kb("VmRSS") / 1024, 1), "MB", **q)
    _, truth = neighbours.exact_knn(vectors, queries, K)
    _, found = neighbours.search(index, queries, K, vectors)
    emit(BENCH, "ivf_recall_at_10", round(neighbours.recall(found, truth), 4), "recall", **q)

    rows = np.random.default_rng(args.seed).choice(n, min(args.knn_rows, n), replace=False)
    t0 = time.perf_counter()
    _, ids = neighbours.knn_rows(index, vectors, rows, KNN_K)
    rate = len(rows) / (time.perf_counter() - t0)
    knn = {**ivf, "rows": len(rows), "k": KNN_K}
    emit(BENCH, "knn_rows_per_s", round(rate, 1), "rows/s", **knn)
    note(f"the build's k-NN pass over all {n:,} rows: ~{n / rate / 60:.1f} min at this rate")
    some = rows[:200]
    _, exact = neighbours.exact_knn(vectors, vectors[some], KNN_K + 1)
    others = np.array([t[t != r][:KNN_K] for r, t in zip(some, exact, strict=True)])
    knn_recall = round(neighbours.recall(ids[: len(some)], others), 4)
    emit(BENCH, "knn_recall_at_30", knn_recall, "recall", **{**knn, "rows": len(some)})
    (workdir / "serve.json").write_text(json.dumps({"p50": percentile(lat, 50)}))


def flat_phase(n: int, args: argparse.Namespace, workdir: Path) -> float:
    """Exact search on the same vectors. Returns the query p50 (ms)."""
    info: dict[str, Any] = {"n": n, "dim": DIM, "seed": args.seed, "type": "Flat", "runs": 1}
    vectors = np.load(workdir / "vectors.npy", mmap_mode="r")
    queries = Clusters(n, args.seed).sample(np.random.default_rng([args.seed, 2]), args.queries)
    with peak_memory() as mem:
        t0 = time.perf_counter()
        flat = faiss.IndexFlatIP(DIM)
        for start in range(0, n, CHUNK):
            flat.add(np.ascontiguousarray(vectors[start : start + CHUNK]))
        emit(BENCH, "flat_build_s", round(time.perf_counter() - t0, 1), "s", **info)
    emit(BENCH, "flat_index_mb", round(n * DIM * 4 / 2**20, 1), "MB", **info)
    emit(BENCH, "flat_build_peak_anon_mb", mem["anon_mb"], "MB", **info)
    fq = queries[: args.flat_queries]
    lat = latencies(lambda x: flat.search(x, K), fq, warmup=3)
    f = {**info, "queries": len(fq), "k": K}
    emit(BENCH, "flat_query_p50_ms", round(percentile(lat, 50), 2), "ms", **f)
    emit(BENCH, "flat_query_p99_ms", round(percentile(lat, 99), 2), "ms", **f)
    return percentile(lat, 50)


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> None:
    t0 = time.perf_counter()
    write_vectors(workdir / "vectors.npy", Clusters(n, args.seed), n, args.seed)
    note(f"{n:,} vectors written in {time.perf_counter() - t0:.0f}s ({workdir})")
    build_phase(n, args, workdir)
    cmd = [sys.executable, __file__, "--serve-from", str(workdir), "--sizes", str(n)]
    cmd += ["--seed", str(args.seed), "--queries", str(args.queries)]
    subprocess.run([*cmd, "--knn-rows", str(args.knn_rows)], check=True)
    if not args.skip_flat:
        ivf_p50 = json.loads((workdir / "serve.json").read_text())["p50"]
        flat_p50 = flat_phase(n, args, workdir)
        emit(BENCH, "speedup_p50", round(flat_p50 / ivf_p50, 1), "x", n=n, runs=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000", help="comma-separated collection sizes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--flat-queries", type=int, default=50)
    parser.add_argument("--knn-rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--serve-from", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve_from:
        serve_phase(int(args.sizes), args, args.serve_from)
        return
    for n in (int(s) for s in args.sizes.split(",")):
        workdir = Path(tempfile.mkdtemp(prefix=f"pixscape-large-{n}-", dir=args.workdir))
        try:
            run_size(n, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
