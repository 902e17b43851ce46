"""The FAISS index on synthetic clustered vectors: exact below the limit, IVF with
exact re-ranking above it, measured recall, serialisation and memory-mapped reads.

Small collections (20k x 64-d) with the exact limit lowered stand in for the
million-image case, so the whole module runs in seconds on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from indexer import index as fi
from indexer import neighbours

N, DIM, LIMIT = 20_000, 64, 5_000


def clustered(n: int, *, seed: int, dim: int = DIM, clusters: int = 80) -> np.ndarray:
    """Unit vectors around `clusters` centres shared by every seed (so fresh
    queries come from the same distribution), with a common mean direction like
    the non-negative CNN features have."""
    shared = np.random.default_rng(1234)
    mean = shared.standard_normal(dim)
    centres = shared.standard_normal((clusters, dim)) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    noise = rng.standard_normal((n, dim)) / np.sqrt(dim)
    x = 0.7 * mean / np.linalg.norm(mean) + centres[labels] + 0.6 * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(N, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(300, seed=1)  # not in the collection


@pytest.fixture(scope="module")
def ivf(vectors: np.ndarray) -> tuple[faiss.Index, dict[str, Any]]:
    return fi.build_with_manifest(vectors, seed=0, exact_limit=LIMIT)


def test_the_type_follows_the_collection_size() -> None:
    assert fi.choose_index_type(0) == "Flat"
    assert fi.choose_index_type(fi.EXACT_LIMIT) == "Flat"
    assert fi.choose_index_type(fi.EXACT_LIMIT + 1).startswith("IVF")
    assert fi.choose_index_type(1_000_000) == "IVF2048,PQ320x4fsr"
    assert fi.choose_index_type(LIMIT + 1, LIMIT, dim=DIM).endswith(",PQ16x4fsr")
    assert fi.choose_index_type(LIMIT + 1, LIMIT, dim=90).endswith(",PQ45x4fsr")
    assert fi.choose_index_type(999, exact_limit=10) == "Flat"  # too few to train
    # Small collections never get more lists than their training sample can fill.
    for count in (101, 1_000, 30_000, 10**7):
        nlist = fi.nlist_for(count)
        assert nlist & (nlist - 1) == 0
        assert (count - min(fi.RECALL_QUERIES, count // 2)) >= fi.MIN_TRAIN_PER_LIST * nlist


def test_flat_below_the_limit_is_exact(vectors: np.ndarray, queries: np.ndarray) -> None:
    small = vectors[:LIMIT]
    index, entry = fi.build_with_manifest(small, exact_limit=LIMIT)
    assert neighbours.is_exact(index) and index.ntotal == LIMIT
    assert entry["type"] == "Flat" and entry["exact"] is True
    scores, ids = neighbours.search(index, queries, 10)
    brute = queries @ small.T
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], atol=1e-5)


def test_ivf_above_the_limit_records_its_measured_recall(
    ivf: tuple[faiss.Index, dict[str, Any]],
) -> None:
    index, entry = ivf
    inner = faiss.extract_index_ivf(index)
    assert not neighbours.is_exact(index) and index.ntotal == N
    # It starts from the chosen type; this isotropic 64-d data is too much for
    # 4-bit codes of 4 dimensions, so it settles on the next finer code.
    assert entry["tried"][0] == fi.choose_index_type(N, LIMIT, dim=DIM)
    assert entry["tried"] == fi.approximate_types(N, DIM)[: len(entry["tried"])]
    assert entry["type"] == entry["tried"][-1] and entry["type"].startswith(f"IVF{inner.nlist},")
    assert entry["exact"] is False and entry["rerank"] == neighbours.RERANK
    assert entry["nprobe"] == inner.nprobe  # the index carries the chosen nprobe
    assert entry["recall_at_10"] >= fi.RECALL_TARGET
    assert entry["recall_at_10_tuning"] >= fi.RECALL_TARGET
    assert entry["recall_queries"] + entry["tuning_queries"] == fi.RECALL_QUERIES
    assert entry["train_sample"] >= fi.MIN_TRAIN_PER_LIST * inner.nlist
    assert entry["seed"] == 0


def test_ivf_search_reranks_to_exact_scores(
    ivf: tuple[faiss.Index, dict[str, Any]], vectors: np.ndarray, queries: np.ndarray
) -> None:
    index, _ = ivf
    scores, ids = neighbours.search(index, queries, 10, vectors)
    assert scores.shape == ids.shape == (len(queries), 10) and (ids >= 0).all()
    # The scores are the dot products with the stored vectors, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    _, truth = neighbours.exact_knn(vectors, queries, 10)
    assert neighbours.recall(ids, truth) >= fi.RECALL_TARGET
    with pytest.raises(ValueError, match="vectors"):
        neighbours.search(index, queries, 10)


def test_ivf_search_on_a_memory_mapped_float16_copy(
    ivf: tuple[faiss.Index, dict[str, Any]], vectors: np.ndarray, tmp_path: Path
) -> None:
    np.save(tmp_path / "v.npy", vectors.astype(np.float16))  # the contract allows float16
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    q = vectors[:50]
    scores, ids = neighbours.search(ivf[0], q, 5, mapped)
    assert (ids[:, 0] == np.arange(50)).all()  # a stored vector finds itself first
    expected = np.einsum("qd,qkd->qk", q, np.asarray(mapped[ids], dtype=np.float32))
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_serialisation_and_memory_mapped_read_give_identical_results(
    ivf: tuple[faiss.Index, dict[str, Any]],
    vectors: np.ndarray,
    queries: np.ndarray,
    tmp_path: Path,
) -> None:
    flat = fi.build_index(vectors[:LIMIT], exact_limit=LIMIT)
    for name, index in (("ivf", ivf[0]), ("flat", flat)):
        data = fi.to_bytes(index)
        path = tmp_path / f"{name}.faiss"
        path.write_bytes(data)
        before = neighbours.search(index, queries, 10, vectors)
        for copy in (fi.from_bytes(data), faiss.read_index(str(path), fi.READ_FLAGS)):
            assert (
                neighbours.is_exact(copy) == neighbours.is_exact(index)
                and copy.ntotal == index.ntotal
            )
            if name == "ivf":
                assert faiss.extract_index_ivf(copy).nprobe == ivf[1]["nprobe"]
            after = neighbours.search(copy, queries, 10, vectors)
            np.testing.assert_array_equal(after[1], before[1])
            np.testing.assert_array_equal(after[0], before[0])


def test_knn_self_on_ivf_excludes_self_and_is_exactly_scored(
    ivf: tuple[faiss.Index, dict[str, Any]], vectors: np.ndarray
) -> None:
    index, _ = ivf
    sims, ids = neighbours.knn_self(index, vectors, 15)
    assert sims.shape == ids.shape == (N, 15) and (ids >= 0).all()
    assert not (ids == np.arange(N)[:, None]).any()
    assert (np.diff(sims, axis=1) <= 0).all()
    rows = np.arange(0, N, 97)
    np.testing.assert_allclose(
        sims[rows], np.einsum("rd,rkd->rk", vectors[rows], vectors[ids[rows]]), atol=1e-5
    )
    _, truth = neighbours.exact_knn(vectors, vectors[rows], 16)
    others = np.array([t[t != r][:15] for r, t in zip(rows, truth, strict=True)])
    assert neighbours.recall(ids[rows], others) >= fi.RECALL_TARGET
    # A subset of rows gets the same lists as the full pass.
    sub_sims, sub_ids = neighbours.knn_rows(index, vectors, rows, 15)
    np.testing.assert_array_equal(sub_ids, ids[rows])
    np.testing.assert_array_equal(sub_sims, sims[rows])


def test_knn_self_pads_tiny_collections() -> None:
    v = clustered(3, seed=2)
    sims, ids = neighbours.knn_self(fi.build_index(v), v, 4)
    assert (ids[:, 2:] == -1).all() and np.isneginf(sims[:, 2:]).all()
    assert not (ids[:, :2] == np.arange(3)[:, None]).any()


def test_exact_knn_matches_brute_force(vectors: np.ndarray, queries: np.ndarray) -> None:
    scores, ids = neighbours.exact_knn(vectors, queries[:20], 7)
    brute = queries[:20] @ vectors.T
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :7], atol=1e-5)


def test_same_seed_same_index(vectors: np.ndarray) -> None:
    part = vectors[:8_000]
    a = fi.build_index(part, seed=3, exact_limit=1_000)
    b = fi.build_index(part, seed=3, exact_limit=1_000)
    assert fi.to_bytes(a) == fi.to_bytes(b)


def test_an_update_refills_the_trained_index(
    vectors: np.ndarray, ivf: tuple[faiss.Index, dict[str, Any]], tmp_path: Path
) -> None:
    faiss.write_index(ivf[0], str(tmp_path / "index.faiss"))
    mapped = faiss.read_index(str(tmp_path / "index.faiss"), fi.READ_FLAGS)  # as the snapshot
    grown = np.concatenate([vectors, vectors[:500] * 0.9 + vectors[500:1000] * 0.1])
    grown /= np.linalg.norm(grown, axis=1, keepdims=True)
    index, entry = fi.build_with_manifest(
        grown, seed=0, exact_limit=LIMIT, trained=(mapped, ivf[1])
    )
    assert entry["training"] == "reused from the previous snapshot"
    assert entry["type"] == ivf[1]["type"] and entry["nprobe"] == ivf[1]["nprobe"]
    assert index.ntotal == len(grown) and entry["recall_at_10"] >= fi.RECALL_TARGET
    assert ivf[0].ntotal == len(vectors)  # the previous index is left as it was


def test_knn_rows_fill_short_approximate_results_exactly() -> None:
    """An IVF probing one small list cannot return k candidates: those rows are
    searched exactly, so no list has a -1 hole (openTSNE corrupts memory on one)."""
    v = clustered(600, seed=11)
    index = faiss.index_factory(v.shape[1], "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(v)
    index.add(v)
    index.nprobe = 1  # ~9 vectors per list: far fewer than k
    assert not neighbours.is_exact(index)
    _, raw = index.search(v[:50], 40)
    assert (raw < 0).any()  # the situation this guards against
    sims, ids = neighbours.knn_rows(index, v, np.arange(50), 40)
    assert (ids >= 0).all() and (ids != np.arange(50)[:, None]).all()
    want_s, _ = neighbours.exact_knn(v, v[:50], 41)
    np.testing.assert_allclose(sims, want_s[:, 1:], atol=1e-5)
