"""The folders an image collection has, and which images a filter lets through
(for the map to dim the others)."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import LiveDep
from ..filters import BAD_FILTER, FilterDep, label_rows, rows_within

router = APIRouter(tags=["filters"])


class Label(BaseModel):
    label: str = Field(description="the folder, as `label=` takes it ('' for the top folder)")
    count: int


class Labels(BaseModel):
    snapshot: str
    labels: list[Label] = Field(description="largest first")


class FilterMask(BaseModel):
    snapshot: str
    total: int = Field(description="images in the collection")
    count: int = Field(description="images the filter lets through")
    mask: str = Field(
        description="base64 of one bit per image in snapshot order (the order of GET"
        " /api/maps/{layout}'s points), least significant bit first: 1 = let through"
    )


@router.get("/api/labels", response_model=Labels, summary="The collection's folders, with counts")
def labels(live: LiveDep) -> Labels:
    found = [Label(label=name, count=len(rows)) for name, rows in label_rows(live).items()]
    found.sort(key=lambda x: (-x.count, x.label))
    return Labels(snapshot=live.snapshot.id, labels=found)


@router.get(
    "/api/filter",
    response_model=FilterMask,
    summary="Which images a filter (label, concept) lets through, as a bit mask",
    responses={
        **BAD_FILTER,
    },
)
def filter_mask(live: LiveDep, filt: FilterDep) -> FilterMask:
    count = live.snapshot.count
    within = rows_within(live, filt)
    bits = np.ones(count, dtype=bool)
    if within is not None:
        bits[:] = False
        bits[within] = True
    packed = np.packbits(bits, bitorder="little")
    return FilterMask(
        snapshot=live.snapshot.id,
        total=count,
        count=int(bits.sum()),
        mask=base64.b64encode(packed.tobytes()).decode(),
    )
