"""GET /api/duplicates: exact copies and near-duplicates, grouped, each group
with the copy to keep (indexer.duplicates finds them in the k-NN lists)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from indexer import duplicates
from indexer.snapshot import read_knn

from ..deps import LiveDep, PoolDep
from ..errors import NoNeighbours
from ..filters import BAD_FILTER, FilterDep, rows_within
from ..schemas import ErrorBody, ImageRef
from ..state import Live
from ..views import image_ref

router = APIRouter(tags=["duplicates"])


class DuplicateImage(ImageRef):
    width: int
    height: int
    size: int = Field(description="file size in bytes")
    similarity: float = Field(description="cosine similarity to the group's keeper (1 for it)")
    exact: bool = Field(description="the same content hash as the keeper")
    keeper: bool = Field(description="the copy suggested to keep")


class DuplicateGroup(BaseModel):
    kind: Literal["exact", "near"] = Field(
        description="exact: every image has the same content hash; near: some differ"
    )
    keeper: int = Field(description="catalog id of the copy to keep")
    reason: str = Field(description="why that one: the most pixels, then the largest file")
    images: list[DuplicateImage] = Field(description="the keeper first, then by similarity")


class DuplicatesResponse(BaseModel):
    snapshot: str
    min_similarity: float = Field(description="the threshold used (rounded to 0.01)")
    default_min_similarity: float
    took_ms: float
    total_groups: int = Field(description="groups found (before offset and limit)")
    total_images: int = Field(description="images in those groups")
    offset: int
    groups: list[DuplicateGroup] = Field(description="largest groups first")


def _groups(live: Live, min_similarity: float) -> list[duplicates.Group]:
    """Every group at this threshold, made once per snapshot and threshold."""
    snap = live.snapshot

    def knn() -> tuple[np.ndarray, np.ndarray]:
        found = read_knn(snap)
        if found is None:
            raise NoNeighbours(snap.id)
        return found

    def make() -> list[duplicates.Group]:
        sims, ids = live.derived.get("knn", knn)
        rows = snap.rows
        return duplicates.find_groups(
            sims,
            ids,
            snap.vectors,
            [r.sha256 for r in rows],
            np.array([r.width * r.height for r in rows], dtype=np.int64),
            np.array([r.size for r in rows], dtype=np.int64),
            min_similarity,
        )

    return live.derived.get(("duplicates", min_similarity), make)


def _group(live: Live, group: duplicates.Group) -> DuplicateGroup:
    rows = live.snapshot.rows
    images = [
        DuplicateImage(
            **image_ref(rows[r]).model_dump(),
            width=rows[r].width,
            height=rows[r].height,
            size=rows[r].size,
            similarity=round(float(s), 6),
            exact=bool(e),
            keeper=j == 0,
        )
        for j, (r, s, e) in enumerate(
            zip(group.rows.tolist(), group.keeper_similarity, group.exact, strict=True)
        )
    ]
    return DuplicateGroup(
        kind=group.kind,  # type: ignore[arg-type]
        keeper=images[0].id,
        reason=group.reason,
        images=images,
    )


@router.get(
    "/api/duplicates",
    response_model=DuplicatesResponse,
    summary="Exact copies and near-duplicates, in groups, each with a copy to keep",
    description="Near-duplicates are re-encoded, resized, slightly cropped or recoloured"
    " copies: images whose embeddings' cosine similarity is at least `min_similarity`."
    f" The default, {duplicates.DEFAULT_MIN_SIMILARITY}, was measured to keep them apart"
    " from merely similar images (bench/duplicates.py). With a filter: the groups with at"
    " least one image in it, whole (a copy in another folder is worth knowing).",
    responses={
        409: {"model": ErrorBody, "description": "the snapshot has no k-NN lists"},
        **BAD_FILTER,
    },
)
async def find_duplicates(
    live: LiveDep,
    pool: PoolDep,
    filt: FilterDep,
    min_similarity: Annotated[
        float,
        Query(
            ge=duplicates.LOWEST_MIN_SIMILARITY,
            le=1.0,
            description="cosine similarity at least which two images are near-duplicates",
        ),
    ] = duplicates.DEFAULT_MIN_SIMILARITY,
    limit: Annotated[int, Query(ge=1, le=500, description="groups to return")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DuplicatesResponse:
    started = time.perf_counter()
    threshold = round(min_similarity, 2)

    def work() -> DuplicatesResponse:
        groups = _groups(live, threshold)
        within = rows_within(live, filt)
        if within is not None:
            inside = np.zeros(live.snapshot.count, dtype=bool)
            inside[within] = True
            groups = [g for g in groups if inside[g.rows].any()]
        return DuplicatesResponse(
            snapshot=live.snapshot.id,
            min_similarity=threshold,
            default_min_similarity=duplicates.DEFAULT_MIN_SIMILARITY,
            took_ms=0.0,
            total_groups=len(groups),
            total_images=sum(len(g.rows) for g in groups),
            offset=offset,
            groups=[_group(live, g) for g in groups[offset : offset + limit]],
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response
