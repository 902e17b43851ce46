"""Every option of a build, with its default and its check, in one place.

`pixscape index` takes its defaults and help from here; build() takes a
`BuildConfig` (or overrides of the default one); the manifest records the
options that shape the result (`recorded`), so the service's admin routes can
re-index with exactly the options the live snapshot was built with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from . import graph as path_graph
from .decode import DEFAULT_MAX_PIXELS
from .layout import LAYOUTS, LayoutParams, parse_layouts
from .models import DEFAULT_MODEL, MODELS
from .scan import DEFAULT_MAX_FILE_BYTES

# Neighbours per image in the build's one k-NN pass (shared by layouts and the graph),
# hence also the most a path graph can keep.
KNN_K = 30

Engine = Literal["local", "ray"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class BuildConfig:
    model_id: str = DEFAULT_MODEL
    batch_size: int = 32
    workers: int | None = None  # decode threads; None: one per core
    threads: int = 0  # inference threads; 0: all cores
    device: Device = "auto"
    engine: Engine = "local"
    ray_address: str | None = None  # a Ray cluster to join (engine "ray" only)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    graph_k: int = path_graph.DEFAULT_K
    path_power: float = path_graph.DEFAULT_POWER
    layouts: tuple[str, ...] = LAYOUTS
    layout_params: LayoutParams = field(default_factory=LayoutParams)
    relayout: bool = False  # fit the maps in full even where they could be carried
    # Never fit a map (for callers without the layout libraries: the service).
    place_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "layouts", parse_layouts(self.layouts))
        if self.model_id not in MODELS:
            raise ValueError(f"unknown model {self.model_id!r}: one of {', '.join(sorted(MODELS))}")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be local or ray, got {self.engine!r}")
        if self.ray_address and self.engine != "ray":
            raise ValueError("an address needs ray: --address needs --engine ray")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if (
            self.batch_size < 1
            or self.threads < 0
            or (self.workers is not None and self.workers < 1)
        ):
            raise ValueError("batch size and workers must be at least 1, threads at least 0")
        if self.max_pixels < 1 or self.max_file_bytes < 1:
            raise ValueError(
                f"max pixels and max file size must be at least 1, got"
                f" {self.max_pixels} and {self.max_file_bytes}"
            )
        if not 1 <= self.graph_k <= KNN_K:
            raise ValueError(f"graph k must be between 1 and {KNN_K}, got {self.graph_k}")
        if not path_graph.MIN_POWER <= self.path_power <= path_graph.MAX_POWER:
            raise ValueError(
                f"path power must be between {path_graph.MIN_POWER} and {path_graph.MAX_POWER},"
                f" got {self.path_power}"
            )
        if self.relayout and self.place_only:
            raise ValueError("relayout and place_only contradict each other")

    def shaping(self) -> dict[str, Any]:
        """The options that shape the snapshot (JSON): recorded in its manifest and
        hashed into its inputs fingerprint. Threads, batch size, device and engine
        change no result; relayout is a request, not a property of the result."""
        return {
            "model_id": self.model_id,
            "layouts": list(self.layouts),
            "layout_params": dataclasses.asdict(self.layout_params),
            "graph_k": self.graph_k,
            "path_power": self.path_power,
            "max_pixels": self.max_pixels,
            "max_file_bytes": self.max_file_bytes,
            "place_only": self.place_only,
        }

    @classmethod
    def recorded(cls, shaping: dict[str, Any], **overrides: Any) -> BuildConfig:
        """The config a manifest's `inputs.options` records, with `overrides`."""
        options = {**shaping, "layouts": tuple(shaping["layouts"])}
        options["layout_params"] = LayoutParams(**shaping["layout_params"])
        return cls(**{**options, **overrides})

    def with_(self, **overrides: Any) -> BuildConfig:
        """This config with some options changed (checked again)."""
        return dataclasses.replace(self, **overrides)
