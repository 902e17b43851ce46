"""Request and response models: the OpenAPI document is built from these."""

from __future__ import annotations

from typing import Any, Literal

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


class Tag(BaseModel):
    word: str = Field(description="an ImageNet concept, in plain words: searchable as `q`")
    probability: float = Field(description="the classifier's probability, in [0, 1]")


class ImageInfo(ImageRef):
    sha256: str
    size: int = Field(description="file size in bytes")
    width: int
    height: int
    format: str = Field(description="image format detected from the content, e.g. JPEG")
    tags: list[Tag] = Field(
        default_factory=list,
        description="what the classifier sees: its classes of probability 0.05 or more"
        " (at least one), best first; empty when the snapshot has no concept scores",
    )


class Match(BaseModel):
    word: str = Field(description="the query's word that found this image")
    concept: str = Field(description="the image's most probable class of those the word reaches")


class ScoredImage(ImageRef):
    score: float = Field(
        description="cosine similarity to the query image, in [-1, 1]; for words alone,"
        " the classifier's probability mass on the classes the words reach, in (0, 1]"
    )
    match: Match | None = Field(None, description="for a search with words: what matched")


class QueryInfo(BaseModel):
    width: int
    height: int
    format: str


class MapPoint(BaseModel):
    x: float = Field(description="in [0, 1], the same units as GET /api/maps/{layout}")
    y: float


class WordsInfo(BaseModel):
    text: str = Field(description="the query's text as given")
    words: list[str] = Field(
        description="the vocabulary words read from it (longest phrase first); an image"
        " scores by the best of them, so several words are alternatives"
    )
    unknown: list[str] = Field(description="parts of the text the vocabulary lacks")
    suggestions: list[str] = Field(description="close vocabulary words for the unknown parts")


class SearchResponse(BaseModel):
    snapshot: str
    k: int
    took_ms: float = Field(description="server time spent: decode, embed and search")
    query: QueryInfo | None = Field(description="the uploaded image; null for words alone")
    within: int | None = Field(
        None, description="images the filter (label, concept) lets through; null: no filter"
    )
    words: WordsInfo | None = Field(None, description="the words read from `q`, if given")
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
    within: int | None = Field(
        None, description="images the filter (label, concept) lets through; null: no filter"
    )
    results: list[ScoredImage]


class PathImage(BaseModel):
    image: ImageRef | None = Field(description="the catalog image; null for an uploaded end")
    upload: Literal["source", "target"] | None = Field(
        None, description="which uploaded end this is, if it is one"
    )
    similarity: float | None = Field(
        description="cosine similarity to the previous image of the chain; null for the first"
    )
    stop: bool = Field(description="true for the source, the waypoints and the target")


class PathResponse(BaseModel):
    snapshot: str
    took_ms: float = Field(description="server time spent (upload decode and embed included)")
    smoothness: float = Field(description="the power p used: a step of distance d costs d**p")
    min_similarity: float | None
    graph_k: int = Field(description="neighbours per image in the graph")
    hops: int = Field(description="graph edges in the route before any resampling")
    resampled: bool = Field(description="true when max_steps thinned the chain")
    total_cost: float = Field(description="sum of (1 - similarity)**p over the route's edges")
    mean_similarity: float | None = Field(description="mean over the steps of `chain`")
    weakest_similarity: float | None = Field(description="lowest step similarity in `chain`")
    weakest_step: int | None = Field(
        description="index in `chain` of the image that ends the weakest step"
    )
    uploads: dict[str, QueryInfo] = Field(default_factory=dict)
    chain: list[PathImage]


class Completion(BaseModel):
    word: str
    classes: int = Field(description="ImageNet classes the word reaches")
    images: int = Field(description="images here whose most probable class it reaches")


class Completions(BaseModel):
    snapshot: str
    prefix: str
    words: list[Completion] = Field(description="most specific (fewest classes) first")


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


class BadRequest(BaseModel):
    """A 422: FastAPI's list of {loc, msg, ...} for a malformed parameter, or a
    message for one that is well formed but wrong (an unknown label, say)."""

    detail: str | list[dict[str, Any]]


class ReloadResponse(BaseModel):
    snapshot: str | None
    swapped: bool
    error: str | None
