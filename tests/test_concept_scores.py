"""Ranking images by words over their top concepts (indexer.concept_scores),
checked against brute force over dense probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.concept_scores import (
    TOP_K,
    ConceptIndex,
    from_blob,
    rank,
    tags,
    to_blob,
    top_concepts,
)

CLASSES = 50


def _probs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, CLASSES)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_top_concepts_are_the_most_probable_classes_best_first() -> None:
    probs = _probs(200)
    classes, top = top_concepts(probs)
    assert classes.shape == top.shape == (200, TOP_K)
    assert classes.dtype == np.uint16 and top.dtype == np.float16
    expected = np.argsort(-probs, axis=1)[:, :TOP_K]
    assert (classes == expected).all()
    assert np.allclose(top, np.take_along_axis(probs, expected, axis=1), rtol=1e-3, atol=1e-6)
    assert (np.diff(top.astype(np.float32), axis=1) <= 0).all()


def test_the_cache_blob_round_trips_and_a_torn_one_is_refused() -> None:
    classes, top = top_concepts(_probs(1))
    blob = to_blob(classes[0], top[0])
    back = from_blob(blob)
    assert back is not None
    assert (back[0] == classes[0]).all() and (back[1] == top[0]).all()
    assert from_blob(blob[:-1]) is None and from_blob(None) is None


def test_mass_is_the_sum_over_the_words_classes_among_the_top_ones() -> None:
    probs = _probs(300, seed=1)
    classes, top = top_concepts(probs)
    index = ConceptIndex(classes, top, CLASSES)
    reach = (3, 7, 11, 40)
    mass, best = index.mass(reach)
    kept = np.zeros_like(probs)
    np.put_along_axis(kept, classes.astype(np.int64), top.astype(np.float32), axis=1)
    assert np.allclose(mass, kept[:, reach].sum(axis=1), atol=1e-6)
    has = kept[:, reach].sum(axis=1) > 0
    assert (best[~has] == -1).all()
    dense_best = np.array(reach)[np.argmax(kept[:, reach], axis=1)]
    assert (best[has] == dense_best[has]).all()
    empty, none = index.mass(())
    assert not empty.any() and (none == -1).all()


def test_rank_takes_the_best_word_for_each_image() -> None:
    probs = _probs(400, seed=2)
    classes, top = top_concepts(probs)
    index = ConceptIndex(classes, top, CLASSES)
    a, b = index.mass((1, 2)), index.mass((30,))
    ranked = rank([a, b], k=15)
    both = np.maximum(a[0], b[0])
    order = np.lexsort((np.arange(len(both)), -both))[:15]
    assert (ranked.rows == order).all()
    assert np.allclose(ranked.scores, both[order])
    from_b = b[0][order] > a[0][order]
    assert (ranked.best_class[from_b] == 30).all()
    assert np.isin(ranked.best_class[~from_b], (1, 2)).all()
    assert len(rank([], 5).rows) == 0


def test_rank_never_returns_images_the_words_do_not_reach() -> None:
    classes = np.array([[0, 1], [2, 3]], np.uint16)
    probs = np.array([[0.9, 0.1], [0.6, 0.4]], np.float16)
    index = ConceptIndex(classes, probs, 4)
    ranked = rank([index.mass((1,))], k=10)
    assert ranked.rows.tolist() == [0] and ranked.best_class.tolist() == [1]
    assert ranked.scores[0] == pytest.approx(0.1, abs=1e-3)


def test_tags_keep_the_likely_classes_and_always_the_first() -> None:
    classes = np.array([5, 9, 2], np.uint16)
    assert tags(classes, np.array([0.7, 0.2, 0.01], np.float16)) == [
        (5, pytest.approx(0.7, abs=1e-3)),
        (9, pytest.approx(0.2, abs=1e-3)),
    ]
    assert [c for c, _ in tags(classes, np.array([0.03, 0.02, 0.01], np.float16))] == [5]


def test_the_cache_keeps_concepts_and_migrates_a_cache_written_before_them(tmp_path) -> None:
    import sqlite3

    from indexer.cache import CachedItem, EmbeddingCache

    old = tmp_path / "embeddings-m.sqlite"
    with sqlite3.connect(old) as db:  # the schema before the concepts column
        db.execute(
            "CREATE TABLE embeddings (sha256 TEXT PRIMARY KEY, width INTEGER NOT NULL,"
            " height INTEGER NOT NULL, format TEXT NOT NULL, vector BLOB NOT NULL,"
            " thumbnail BLOB NOT NULL)"
        )
        db.execute(
            "INSERT INTO embeddings VALUES ('a', 1, 2, 'PNG', ?, x'00')",
            (np.ones(4, np.float32).tobytes(),),
        )
    classes, top = top_concepts(_probs(1))
    with EmbeddingCache(tmp_path, "m", 4, concepts=True) as cache:
        assert cache.known() == set()  # the old row lacks concepts: embedded again
        item = CachedItem("b", 3, 4, "JPEG", np.ones(4, np.float32), b"t", (classes[0], top[0]))
        cache.put_many([item])
        assert cache.known() == {"b"}
        got = cache.get_many(["a", "b"])
        assert set(got) == {"b"} and got["b"].concepts is not None
        assert (got["b"].concepts[0] == classes[0]).all()
    with EmbeddingCache(tmp_path, "m", 4) as plain:  # a model without a classifier
        assert plain.known() == {"b"}
