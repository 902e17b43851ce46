"""Names for the map's regions in words: for each cluster, the vocabulary word
most over-represented in it against the whole collection.

A word's share in a cluster is the mean probability its images put on the
classes the word reaches (their top concepts, indexer.concept_scores); its lift
is that share over the word's share in the whole collection. A word scores
share * log(lift): common in the cluster and rare elsewhere. "entity" is in
every image (lift 1, score 0), a single breed is too rare in a cluster of dogs
to beat "dog". Words reaching more than MAX_REACH classes ("object",
"artifact") name nothing, nor do WordNet's abstract category words (ABSTRACT:
"solid" is where WordNet files solid food, no one's name for a region). Each
word names one cluster at most, the best-scoring pairs first; a cluster with
no clear word (share under MIN_SHARE or lift under MIN_LIFT) keeps its folder
label, in plain words. Pure: arrays in, names out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .concepts import Concepts

MAX_REACH = 150
MIN_SHARE = 0.2
MIN_LIFT = 2.0
MIN_SIZE = 3  # clusters smaller than this keep their folder label
ABSTRACT = frozenset(
    "solid matter substance material stuff whole unit object artifact artefact"
    " instrumentality commodity covering equipment implement device structure construction"
    " creation product part portion piece organism being causal agent".split()
    + ["living thing", "physical entity", "consumer goods", "physical object"]
)


def _candidates(vocabulary: Concepts) -> tuple[list[str], np.ndarray]:
    """One word per distinct set of classes (the shortest, then first in order),
    most specific (fewest classes) first, so that ties go to it; and the (W, C)
    incidence of words and classes."""
    chosen: dict[tuple[int, ...], str] = {}
    for word in sorted(vocabulary.words, key=lambda w: (len(w), w)):
        reach = tuple(sorted(vocabulary.words[word]))
        if len(reach) <= MAX_REACH and reach not in chosen and word not in ABSTRACT:
            chosen[reach] = word
    sets = sorted(chosen, key=lambda reach: (len(reach), chosen[reach]))
    words = [chosen[reach] for reach in sets]
    incidence = np.zeros((len(words), len(vocabulary.synsets)), np.float32)
    for w, reach in enumerate(sets):
        incidence[w, list(reach)] = 1.0
    return words, incidence


def cluster_names(
    assigned: np.ndarray,
    n_clusters: int,
    classes: np.ndarray,
    probs: np.ndarray,
    vocabulary: Concepts,
) -> list[str | None]:
    """Each cluster's word (None where no word is clear). `assigned` (N,) gives
    each image's cluster; `classes`, `probs` (N, K) its top concepts."""
    n = len(assigned)
    names: list[str | None] = [None] * n_clusters
    if n == 0 or n_clusters == 0:
        return names
    n_classes = len(vocabulary.synsets)
    # Class mass per cluster: (n_clusters, C), summed over each cluster's images.
    rows = np.repeat(np.asarray(assigned, np.int64), classes.shape[1])
    flat = rows * n_classes + np.asarray(classes, np.int64).reshape(-1)
    mass = np.bincount(
        flat, weights=np.asarray(probs, np.float64).reshape(-1), minlength=n_clusters * n_classes
    ).reshape(n_clusters, n_classes)
    sizes = np.bincount(assigned, minlength=n_clusters).astype(np.float64)
    words, incidence = _candidates(vocabulary)
    share = (mass @ incidence.T.astype(np.float64)) / np.maximum(sizes, 1)[:, None]  # (n, W)
    overall = (mass.sum(axis=0) @ incidence.T.astype(np.float64)) / n  # (W,)
    lift = share / np.maximum(overall, 1e-12)[None, :]
    clear = (share >= MIN_SHARE) & (lift >= MIN_LIFT) & (sizes[:, None] >= MIN_SIZE)
    score = np.where(clear, share * np.log(np.maximum(lift, 1.0)), 0.0)
    used: set[int] = set()
    # Best pairs first; ties to the lower cluster, then the lower word.
    order = np.lexsort((np.arange(score.size) % score.shape[1], -score.reshape(-1)))
    for at in order:
        c, w = divmod(int(at), score.shape[1])
        if score[c, w] <= 0:
            break
        if names[c] is None and w not in used:
            names[c] = words[w]
            used.add(w)
    return names


def name_clusters(clusters: list[dict[str, Any]], names: list[str | None]) -> list[dict[str, Any]]:
    """maps.json's clusters with their `name`: the word where there is one
    (`name_from` "concepts"), else the folder label in plain words ("folder"),
    else none."""
    taken = {w for w in names if w is not None}
    out = []
    for c, word in zip(clusters, names, strict=True):
        label = c.get("label")
        plain = " ".join(label.replace("_", " ").replace("-", " ").split()) if label else None
        if word is not None:
            out.append({**c, "name": word, "name_from": "concepts"})
        elif plain and plain not in taken:  # two regions never share a name
            taken.add(plain)
            out.append({**c, "name": plain, "name_from": "folder"})
        else:
            out.append({**c, "name": None, "name_from": None})
    return out
