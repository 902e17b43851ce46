"""The map's regions named in words (indexer.naming): on synthetic concept scores,
and on the session's real snapshot (real classifier, real images)."""

from __future__ import annotations

import numpy as np

from indexer.concepts import Concepts
from indexer.naming import cluster_names, name_clusters

from .conftest import Built


def _class(vocabulary: Concepts, name: str) -> int:
    return vocabulary.names.index(name)


def test_each_cluster_gets_its_over_represented_word_once() -> None:
    vocabulary = Concepts.load()
    breeds = [_class(vocabulary, n) for n in ("golden retriever", "beagle", "pug", "borzoi")]
    fruit = [_class(vocabulary, n) for n in ("strawberry", "banana", "lemon", "fig")]
    other = [_class(vocabulary, n) for n in ("toaster", "umbrella", "volcano", "canoe")]
    # Cluster 0: dogs of four breeds; 1: four fruits; 2: a mixture; 3: dogs again.
    rows = [[breeds[i % 4]] for i in range(12)] + [[fruit[i % 4]] for i in range(12)]
    rows += [[other[i % 4]] for i in range(12)] + [[breeds[i % 2]] for i in range(6)]
    assigned = np.repeat([0, 1, 2, 3], [12, 12, 12, 6])
    classes = np.array(rows, np.uint16)
    probs = np.ones((len(rows), 1), np.float16)
    names = cluster_names(assigned, 4, classes, probs, vocabulary)
    assert names[0] == "dog" and names[1] in ("fruit", "edible fruit")
    assert names[3] not in (None, "dog")  # a neighbour never repeats a name
    assert set(vocabulary.classes(names[3])) & set(breeds)
    assert names[2] is None or names[2] not in names[:2]  # no word is clear in a mixture


def test_clusters_without_a_clear_word_keep_their_folder_in_plain_words() -> None:
    clusters = [
        {"id": 0, "label": "road_signs"},
        {"id": 1, "label": "birds"},
        {"id": 2, "label": "road_signs"},
        {"id": 3, "label": None},
    ]
    named = name_clusters(clusters, [None, "bird", None, None])
    assert [c["name"] for c in named] == ["road signs", "bird", None, None]
    assert [c["name_from"] for c in named] == ["folder", "concepts", None, None]


def test_the_real_map_names_its_regions_in_words(built: Built) -> None:
    vocabulary = Concepts.load()
    clusters = built.snapshot.maps["clusters"]
    names = [c["name"] for c in clusters if c["name"]]
    assert len(names) == len(set(names))
    assert all("_" not in n for n in names)
    by_words = [c for c in clusters if c["name_from"] == "concepts"]
    assert by_words, clusters
    # The crops of chelsea.png (a tabby) gather in a region named for cats.
    chelsea = np.array(["chelsea" in r.path for r in built.snapshot.rows])
    cats = set(vocabulary.classes("cat"))
    cluster = int(np.bincount(np.asarray(built.snapshot.clusters)[chelsea]).argmax())
    word = clusters[cluster]["name"]
    assert clusters[cluster]["name_from"] == "concepts" and set(vocabulary.classes(word)) & cats
