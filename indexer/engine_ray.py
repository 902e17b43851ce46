"""The Ray engine: decode and embed as a Ray Data pipeline over a cluster.

It replaces `build.embed_pending` and nothing else: the same todo list goes in,
the same cache rows and `Skipped` reasons come out, so scanning before it and
the finishing steps after it (index, layouts, graph, publish) are unchanged.

    todo paths -> [decode tasks ->] embedder actors -> shards -> the embedding cache

On CPUs each embedder actor decodes its own batches (see `plan_pool`); with GPUs,
decode tasks on any node's CPUs feed one actor per GPU. An actor writes every batch
it embeds as one shard, data/shards/<model>/<run>/<uuid>.npz, and the driver ingests
each shard into the cache as soon as its rows come back, so a crash loses at most
the shards in flight; shards left behind by a crashed run are ingested by the next
run before it plans any work, so they are never recomputed. A file that fails to
decode travels on as a row carrying its reason.

Workers read the images, the model and the shard folder by path: on a cluster the
collection and the data folder must be on a filesystem every node mounts at the
same path, and every node needs pixscape's dependencies (`pip install pixscape[ray]`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .cache import CachedItem, EmbeddingCache
from .decode import DecodeError
from .embed import Embedder
from .prepare import prepare
from .progress import Progress
from .scan import FileEntry, Skipped

# A shard row's top concepts where the model has none: zero of them.
_NO_TOP = (np.zeros(0, np.uint16), np.zeros(0, np.float16))

Batch = dict[str, np.ndarray]


class RayNotInstalled(RuntimeError):
    """--engine ray without the optional extra."""

    def __init__(self) -> None:
        super().__init__("the ray engine needs the ray extra: pip install 'pixscape[ray]'")


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class PoolPlan:
    """How the embedder actors and the decoding share the cluster."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    threads: int  # onnxruntime intra-op threads per actor
    device: str  # "cuda" or "cpu", for Embedder
    decode_in_actor: bool  # else decode tasks feed the actors
    decode_cpus: float  # per decode task, when there are any


def plan_pool(node_cpus: list[float], gpus: float, device: str = "auto") -> PoolPlan:
    """One embedder actor per GPU where the cluster has GPUs, else one per core.

    On CPUs each actor decodes its own batch and then embeds it with one
    inference thread: the two stages take turns on one core, as in the local
    engine, no pixels cross between processes, and single-threaded onnxruntime
    sessions never wait on each other at the per-layer barrier. With GPUs,
    decode tasks run on the CPUs of any node and feed the GPU actors.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if not node_cpus:
        raise ValueError("the Ray cluster has no node with CPUs")
    if device == "cuda" and gpus < 1:
        raise ValueError("device cuda requested but the Ray cluster has no GPU")
    smallest = min(node_cpus)
    if gpus >= 1 and device != "cpu":
        # Half a core at most feeds each GPU actor, so decode tasks fit beside it.
        cpus = min(1.0, smallest / 2)
        return PoolPlan(int(gpus), cpus, 1.0, 1, "cuda", False, cpus)
    actors = sum(max(1, math.floor(c)) for c in node_cpus)
    return PoolPlan(actors, min(1.0, smallest), 0.0, 1, "cpu", True, 0.0)


# ---------------------------------------------------------------- shards


def write_shard(path: Path, items: list[CachedItem]) -> None:
    """One .npz per embedded batch, written under a temporary name, then renamed.

    Not fsynced: the cache is the durable copy, and a shard torn by a power cut
    is discarded by read_shard and its images embedded again.
    """
    thumbs = [it.thumbnail for it in items]
    offsets = np.cumsum([0, *(len(t) for t in thumbs)], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as fh:
        np.savez(
            fh,
            sha256=np.array([it.sha256 for it in items], dtype="U64"),
            width=np.array([it.width for it in items], dtype=np.int64),
            height=np.array([it.height for it in items], dtype=np.int64),
            format=np.array([it.format for it in items], dtype="U16"),
            vectors=np.stack([np.asarray(it.vector, dtype=np.float32) for it in items]),
            # Top concepts (indexer.concept_scores), empty for a model without them.
            concept_classes=np.stack(
                [it.concepts[0] if it.concepts is not None else _NO_TOP[0] for it in items]
            ),
            concept_probs=np.stack(
                [it.concepts[1] if it.concepts is not None else _NO_TOP[1] for it in items]
            ),
            # Thumbnails are variable-length bytes: one buffer plus offsets keeps
            # the file loadable without pickle.
            thumbs=np.frombuffer(b"".join(thumbs), dtype=np.uint8),
            thumb_offsets=offsets,
        )
    os.replace(tmp, path)


def read_shard(path: Path) -> list[CachedItem] | None:
    """The items of a shard, or None when the file is torn or not a shard."""
    try:
        with np.load(path, allow_pickle=False) as z:
            sha, vectors = z["sha256"], z["vectors"]
            width, height, fmt = z["width"], z["height"], z["format"]
            thumbs, offsets = z["thumbs"].tobytes(), z["thumb_offsets"]
            classes, probs = z["concept_classes"], z["concept_probs"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return [
        CachedItem(
            str(sha[i]),
            int(width[i]),
            int(height[i]),
            str(fmt[i]),
            vectors[i].copy(),
            thumbs[offsets[i] : offsets[i + 1]],
            (classes[i].copy(), probs[i].copy()) if classes.shape[1] else None,
        )
        for i in range(len(sha))
    ]


def ingest_shard(path: Path, cache: EmbeddingCache) -> list[CachedItem]:
    """Put a shard's items into the cache, then delete it (the cache is the copy kept).

    Idempotent: a crash between the commit and the unlink re-inserts the same rows.
    """
    items = read_shard(path)
    if items:
        cache.put_many(items)
    path.unlink(missing_ok=True)
    return items or []


def ingest_leftovers(shards_dir: Path, cache: EmbeddingCache) -> set[str]:
    """Ingest shards that a crashed run wrote but never ingested; their hashes."""
    done: set[str] = set()
    if not shards_dir.is_dir():
        return done
    for run_dir in sorted(p for p in shards_dir.iterdir() if p.is_dir()):
        for tmp in run_dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)  # a write cut short
        for shard in sorted(run_dir.glob("*.npz")):
            done.update(it.sha256 for it in ingest_shard(shard, cache))
        shutil.rmtree(run_dir, ignore_errors=True)
    return done


# ---------------------------------------------------------------- pipeline stages


def decode_batch(batch: Batch, input_size: int, max_pixels: int) -> Batch:
    """Decode, crop and thumbnail a batch; a file that fails keeps its row and a reason."""
    n = len(batch["path"])
    pixels = np.zeros((n, input_size, input_size, 3), dtype=np.uint8)
    width = np.zeros(n, dtype=np.int64)
    height = np.zeros(n, dtype=np.int64)
    fmt = [""] * n
    thumbs = [b""] * n
    errors = [""] * n
    for i in range(n):
        entry = FileEntry(str(batch["rel_path"][i]), Path(str(batch["path"][i])), 0, "", None)
        try:
            prepared = prepare(entry, input_size, max_pixels)
        except DecodeError as exc:
            errors[i] = exc.reason or "unreadable image"
            continue
        pixels[i] = prepared.pixels
        width[i], height[i] = prepared.width, prepared.height
        fmt[i], thumbs[i] = prepared.format, prepared.thumbnail
    return {
        "rel_path": batch["rel_path"],
        "sha256": batch["sha256"],
        "pixels": pixels,
        "width": width,
        "height": height,
        "format": np.array(fmt, dtype=object),
        "thumbnail": np.array(thumbs, dtype=object),
        "error": np.array(errors, dtype=object),
    }


class EmbedShards:
    """A Ray Data actor: embeds a batch and writes it as one shard.

    Given paths rather than pixels (the CPU plan), it decodes the batch first.
    """

    def __init__(
        self, model_path: str, run_dir: str, threads: int, device: str, max_pixels: int
    ) -> None:
        self.embedder = Embedder(Path(model_path), threads=threads, device=device)
        self.run_dir = Path(run_dir)
        self.max_pixels = max_pixels

    def __call__(self, batch: Batch) -> Batch:
        if "pixels" not in batch:
            batch = decode_batch(batch, self.embedder.input_size, self.max_pixels)
        errors = [str(e) for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if not e]
        shard = ""
        if ok:
            vectors, tops = self.embedder.embed_with_top(batch["pixels"][ok])
            items = [
                CachedItem(
                    str(batch["sha256"][i]),
                    int(batch["width"][i]),
                    int(batch["height"][i]),
                    str(batch["format"][i]),
                    vec,
                    bytes(batch["thumbnail"][i]),
                    top,
                )
                for i, vec, top in zip(ok, vectors, tops, strict=True)
            ]
            shard = str(self.run_dir / f"{uuid.uuid4().hex}.npz")
            write_shard(Path(shard), items)
        # One row out per row in: the driver counts progress per image.
        return {
            "rel_path": batch["rel_path"],
            "error": np.array(errors, dtype=object),
            "shard": np.array(["" if e else shard for e in errors], dtype=object),
        }


# ---------------------------------------------------------------- driver


@contextmanager
def ray_runtime(address: str | None) -> Iterator[None]:
    """Connect to `address`, or start a local runtime; shut down only what we started.

    A runtime that is already up (a test's, a notebook's) is used as it is.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayNotInstalled from exc
    if ray.is_initialized():
        yield
        return
    # pixscape runs offline: no usage statistics, no dashboard, warnings only.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, **options)
    try:
        yield
    finally:
        ray.shutdown()


def _cluster_plan(device: str) -> PoolPlan:
    import ray

    node_cpus = [
        float(node["Resources"].get("CPU", 0))
        for node in ray.nodes()
        if node.get("Alive") and node["Resources"].get("CPU", 0) > 0
    ]
    return plan_pool(node_cpus, float(ray.cluster_resources().get("GPU", 0)), device)


def _pipeline(
    items: list[dict[str, str]],
    plan: PoolPlan,
    embedder: Embedder,
    batch_size: int,
    max_pixels: int,
    run_dir: Path,
) -> Any:
    """The Ray Data pipeline: items -> (decode tasks) -> embedder actors -> shards."""
    import ray

    # One block per batch: a block is exactly one decode or actor call, and
    # no more actors start than there are blocks to give them.
    blocks = math.ceil(len(items) / batch_size)
    dataset: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=blocks)
    if not plan.decode_in_actor:
        dataset = dataset.map_batches(
            partial(decode_batch, input_size=embedder.input_size, max_pixels=max_pixels),
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=plan.decode_cpus,
            udf_modifying_row_count=False,  # a failed file keeps its row
        )
    return dataset.map_batches(
        EmbedShards,
        batch_size=batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={
            "model_path": str(embedder.model_path.resolve()),
            "run_dir": str(run_dir.resolve()),
            "threads": plan.threads,
            "device": plan.device,
            "max_pixels": max_pixels,
        },
        compute=ray.data.ActorPoolStrategy(size=min(plan.actors, blocks)),
        num_cpus=plan.actor_cpus,
        num_gpus=plan.actor_gpus,
        udf_modifying_row_count=False,
    )


def embed_pending_ray(
    todo: list[FileEntry],
    embedder: Embedder,
    cache: EmbeddingCache,
    *,
    shards_dir: Path,
    batch_size: int,
    max_pixels: int,
    device: str = "auto",
    address: str | None = None,
    progress: Progress,
) -> list[Skipped]:
    """`embed_pending` on Ray: decode and embed `todo` into the cache via shards.

    `embedder` is the driver's: only its model path and input size are used, each
    actor opens its own session. Returns the files that failed to decode, in
    `todo` order.
    """
    resumed = ingest_leftovers(shards_dir, cache)
    if resumed:
        progress.log(f"ingested {len(resumed)} embeddings left by an interrupted run")
    pending = [e for e in todo if e.sha256 not in resumed]
    if not pending:
        return []
    run_dir = shards_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    failed: dict[str, str] = {}
    with ray_runtime(address):
        import ray

        plan = _cluster_plan(device)
        progress.log(
            f"ray: {plan.actors} embedder actor(s) on {plan.device}, decoding"
            f" {'in the actors' if plan.decode_in_actor else 'in tasks'}"
        )
        # Started once the runtime is up, so the rate and ETA are the pipeline's.
        progress.start("embedding", len(todo))
        progress.advance(len(todo) - len(pending))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # Progress reports images/s and ETA
        context.print_on_execution_start = False
        items = [
            {"path": str(e.abs_path), "rel_path": e.rel_path, "sha256": e.sha256} for e in pending
        ]
        dataset = _pipeline(items, plan, embedder, batch_size, max_pixels, run_dir)
        ingested: set[str] = set()
        for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for rel, error, shard in zip(out["rel_path"], out["error"], out["shard"], strict=True):
                if error:
                    failed[str(rel)] = str(error)
                    progress.log(f"skipped {rel}: {error}")
                elif shard not in ingested:
                    ingested.add(str(shard))
                    ingest_shard(Path(str(shard)), cache)
                progress.advance(1)
    shutil.rmtree(run_dir, ignore_errors=True)
    return [Skipped(e.rel_path, failed[e.rel_path]) for e in pending if e.rel_path in failed]
