"""Request and response models: the OpenAPI document is built from these."""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_K = 200


class ImageRef(BaseModel):
    id: int = Field(description="catalog id, stable within a snapshot")
    path: str = Field(
        description="path relative to the collection folder, as people read it: bytes"
        " that are not UTF-8 appear as \\xNN, control characters as \\n, \\t or \\xNN."
        " Not an identifier: fetch the file by id (image_url)"
    )
    label: str | None = Field(description="the folder the image sits in, if any")
    thumbnail_url: str
    image_url: str


class ImagePage(BaseModel):
    snapshot: str
    total: int = Field(description="images in the collection")
    offset: int = Field(description="position of the first image of this page, in id order")
    images: list[ImageRef]


class ImageInfo(ImageRef):
    sha256: str
    size: int = Field(description="file size in bytes")
    width: int
    height: int
    format: str = Field(description="image format detected from the content, e.g. JPEG")


class ScoredImage(ImageRef):
    score: float = Field(description="cosine similarity to the query, in [-1, 1]")


class QueryInfo(BaseModel):
    width: int
    height: int
    format: str


class MapPoint(BaseModel):
    x: float = Field(description="in [0, 1], the same units as GET /api/maps/{layout}")
    y: float


class SearchResponse(BaseModel):
    snapshot: str
    k: int
    took_ms: float = Field(description="server time spent: decode, embed and search")
    query: QueryInfo
    results: list[ScoredImage]
    placement: dict[str, MapPoint] = Field(
        default_factory=dict,
        description="'you are here': where the query falls on each layout, the"
        " similarity-weighted mean of its nearest images' positions",
    )


class SimilarResponse(BaseModel):
    snapshot: str
    k: int
    took_ms: float
    query: ImageRef
    results: list[ScoredImage]


class Health(BaseModel):
    status: str
    snapshot: str | None


class ModelInfo(BaseModel):
    id: str
    fingerprint: str
    input_size: int
    dim: int


class Stats(BaseModel):
    snapshot: str
    created: str
    count: int
    dim: int
    model: ModelInfo
    index_type: str
    build_seconds: dict[str, float]
    skipped: int


class ErrorBody(BaseModel):
    detail: str


class ReloadResponse(BaseModel):
    snapshot: str | None
    swapped: bool
    error: str | None
