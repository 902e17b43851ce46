"""Search: by an uploaded image (POST), by words (GET ?q=), or an image steered by
words (POST with ?q=); and completion of words as people type them."""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Query, UploadFile

from indexer import neighbours
from indexer.concept_scores import Ranked

from ..deps import LiveDep, PoolDep, SettingsDep
from ..filters import BAD_FILTER, FilterDep, rows_within
from ..mapdata import placement, word_placement
from ..schemas import (
    MAX_K,
    Completion,
    Completions,
    ErrorBody,
    Match,
    ScoredImage,
    SearchResponse,
    WordsInfo,
)
from ..state import Live
from ..uploads import embed_query, read_upload
from ..views import scored_images
from ..words import (
    STEER_FLOOR,
    Reading,
    Words,
    matched_word,
    rank_words,
    read_query,
    steer,
    words_of,
)

router = APIRouter(tags=["search"])

MAX_QUERY_CHARS = 200
WordsQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="words, e.g. `parrot` or `dog, boat`: the images the classifier puts"
        " the most probability on for the ImageNet classes the words reach (WordNet: `dog`"
        " reaches 118 breeds); several words are alternatives",
    ),
]
K = Annotated[int | None, Query(ge=1, le=MAX_K, description="results to return")]
NO_CONCEPTS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the snapshot has no concept scores"}
}


def _words_info(text: str, reading: Reading) -> WordsInfo:
    return WordsInfo(
        text=text,
        words=list(reading.words),
        unknown=list(reading.unknown),
        suggestions=list(reading.suggestions),
    )


def _results(live: Live, words: Words, reading: Reading, ranked: Ranked) -> list[ScoredImage]:
    results = scored_images(live.snapshot.rows, ranked.scores, ranked.rows)
    names = words.vocabulary.names
    for result, cls in zip(results, ranked.best_class.tolist(), strict=True):
        result.match = Match(word=matched_word(words, reading, cls), concept=names[cls])
    return results


@router.get(
    "/api/search",
    response_model=SearchResponse,
    summary="Find images by words",
    description="Unknown words are not an error: the answer has no results, and"
    " `words.suggestions` offers close vocabulary words.",
    responses={**NO_CONCEPTS, **BAD_FILTER},
)
async def search_words(
    live: LiveDep,
    pool: PoolDep,
    settings: SettingsDep,
    q: WordsQuery,
    filt: FilterDep,
    k: K = None,
) -> SearchResponse:
    started = time.perf_counter()
    k = k or settings.default_k

    def work() -> SearchResponse:
        words = words_of(live)
        reading = read_query(words.vocabulary, q)
        within = rows_within(live, filt)
        ranked = rank_words(words, reading, k, within)
        return SearchResponse(
            snapshot=live.snapshot.id,
            k=k,
            took_ms=0.0,
            query=None,
            within=None if within is None else len(within),
            words=_words_info(q, reading),
            results=_results(live, words, reading, ranked),
            placement=word_placement(live.snapshot, ranked.scores, ranked.rows),
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


@router.post(
    "/api/search",
    response_model=SearchResponse,
    summary="Find the images most similar to an uploaded one, optionally among those words reach",
    responses={
        400: {"model": ErrorBody, "description": "corrupt, truncated or empty image"},
        413: {"model": ErrorBody, "description": "upload over the size limit"},
        415: {"model": ErrorBody, "description": "not an image format we accept"},
        503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
        **NO_CONCEPTS,
        **BAD_FILTER,
    },
)
async def search(
    live: LiveDep,
    pool: PoolDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, BMP or TIFF")],
    filt: FilterDep,
    k: K = None,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_CHARS,
            description="words to steer by: only images the words reach (probability mass"
            f" at least {STEER_FLOOR}), ranked by similarity to the upload",
        ),
    ] = None,
) -> SearchResponse:
    started = time.perf_counter()
    data = await read_upload(file, settings.max_upload_bytes)
    k = k or settings.default_k

    def work() -> SearchResponse:
        within = rows_within(live, filt)
        vector, query = embed_query(live, data, settings.max_pixels)
        snap = live.snapshot
        info: WordsInfo | None = None
        top: tuple[np.ndarray, np.ndarray] | None = None
        if q:
            words = words_of(live)
            reading = read_query(words.vocabulary, q)
            ranked = steer(words, reading, vector, snap.vectors, k, within)
            results = _results(live, words, reading, ranked)
            info = _words_info(q, reading)
        else:
            if within is None:
                found = neighbours.search(snap.index, vector, k, snap.vectors)
            else:
                found = neighbours.search_within(snap.index, vector, k, snap.vectors, within)
            top = found[0][0], found[1][0]
            results = scored_images(snap.rows, *top)
        return SearchResponse(
            snapshot=snap.id,
            k=k,
            took_ms=0.0,
            query=query,
            within=None if within is None else len(within),
            words=info,
            results=results,
            # The upload's own place: among its nearest images, whatever the words
            # or the filter (placement searches again where `top` is filtered).
            placement=placement(snap, vector, top if within is None else None),
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


@router.get(
    "/api/concepts",
    response_model=Completions,
    summary="Vocabulary words that start with a prefix, for autocompletion",
    responses=NO_CONCEPTS,
)
def concepts(
    live: LiveDep,
    prefix: Annotated[str, Query(max_length=MAX_QUERY_CHARS)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Completions:
    words = words_of(live)
    found = []
    for word in words.vocabulary.complete(prefix, limit=limit):
        reach = words.vocabulary.classes(word)
        found.append(Completion(word=word, classes=len(reach), images=words.images(reach)))
    return Completions(snapshot=live.snapshot.id, prefix=prefix, words=found)
