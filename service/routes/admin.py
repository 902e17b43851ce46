"""Admin: reload, and adding or removing images without a full rebuild.

An added image is checked (decoded) first, stored in the collection folder under
a name made from its content hash, and the collection is re-indexed
incrementally (indexer.build with the snapshot's own model.onnx, so no torch):
unchanged images keep their ids, neighbours and places on the maps, the new one
is placed among its neighbours. A removed image is moved out of the collection
into data/removed/, not destroyed. The answer comes after the new snapshot is
published and live, so a crash after a 2xx loses nothing; admin calls run one at
a time (a lock here, and the build's own file lock against a concurrent CLI run).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel, Field

from indexer.build import build
from indexer.config import BuildConfig
from indexer.graph import DEFAULT_K, DEFAULT_POWER
from indexer.layout import LAYOUTS, LayoutParams
from indexer.scan import readable
from indexer.snapshot import Snapshot, fsync_dir
from indexer.stages import RelayoutDue

from ..deps import HolderDep, ImageId, LiveDep, PoolDep, SettingsDep, require_admin
from ..schemas import ErrorBody, ImageRef, ReloadResponse
from ..settings import Settings
from ..state import Live, SnapshotHolder
from ..uploads import decode_upload, read_upload
from ..views import image_ref

router = APIRouter(
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"model": ErrorBody, "description": "missing or wrong admin key"},
        403: {"model": ErrorBody, "description": "admin API switched off (no admin key set)"},
        409: {
            "model": ErrorBody,
            "description": "the collection folder is not writable, or the maps need a full"
            " layout (`pixscape index`)",
        },
    },
)

MAX_FILES = 64
UPLOADS = "uploads"  # the folder (label) of added images when none is given
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
_EXTENSIONS |= {"BMP": ".bmp", "TIFF": ".tif"}


class AddedImages(BaseModel):
    snapshot: str = Field(description="the new snapshot, already live")
    took_ms: float
    images: list[ImageRef] = Field(description="the added images, in upload order")


class BadAddRequest(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="a message, or FastAPI's list of validation errors (e.g. no `files` part)"
    )


class RemovedImage(BaseModel):
    snapshot: str = Field(description="the new snapshot, already live")
    took_ms: float
    id: int
    moved_to: str = Field(description="where the file went, relative to the data folder")


def _lock(request: Request) -> asyncio.Lock:
    lock: asyncio.Lock = request.app.state.admin_lock
    return lock


LockDep = Annotated[asyncio.Lock, Depends(_lock)]


def _store(folder: Path, name: str, data: bytes) -> None:
    """Write `data` as folder/name durably: hidden temp file, fsync, rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".pixscape-{os.getpid()}-{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / name)
    fsync_dir(folder)


def _move(source: Path, target: Path) -> None:
    """Move a file durably; across file systems (a container's volumes) by copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # data/ and the collection are on different file systems (container volumes)
        shutil.copy2(source, target)
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
        source.unlink()
    fsync_dir(target.parent)
    fsync_dir(source.parent)


async def _latest(holder: SnapshotHolder) -> Live:
    """The snapshot CURRENT names, opened now (call under the admin lock).

    Not the one a request started with: a concurrent admin call or a `pixscape
    index` may have published another since, and pruning may have removed the
    older one's folder, model.onnx included, which the re-index would load.
    """
    await anyio.to_thread.run_sync(holder.refresh)
    if holder.live is None:
        raise HTTPException(status_code=503, detail="no snapshot is loaded yet")
    return holder.live


async def _run(work: Callable[[], Snapshot]) -> Snapshot:
    """Run an admin change off the event loop; a read-only collection, or maps that
    only a full build can lay out again, is a 409."""
    try:
        return await anyio.to_thread.run_sync(work)
    except RelayoutDue as exc:
        raise HTTPException(
            status_code=409,
            detail=f"{exc}; the change to the collection folder is kept, and that"
            " build takes it in (the live snapshot is unchanged until then)",
        ) from exc
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise HTTPException(
            status_code=409,
            detail=f"the collection folder is not writable ({exc.strerror}): mount or"
            " give it read-write to add or remove images",
        ) from exc


def _config(snapshot: Snapshot) -> BuildConfig:
    """The options the snapshot was built with (older manifests: what they record)."""
    m = snapshot.manifest
    recorded = (m.inputs or {}).get("options")
    if recorded is not None:
        return BuildConfig.recorded(recorded, relayout=False)
    return BuildConfig(
        model_id=m.model.id,
        layouts=tuple(snapshot.layouts) or LAYOUTS,
        layout_params=LayoutParams(seed=int((m.maps or {}).get("seed", 0))),
        graph_k=m.graph.k if m.graph else DEFAULT_K,
        path_power=m.graph.power if m.graph else DEFAULT_POWER,
    )


def _reindex(snapshot: Snapshot, settings: Settings, holder: SnapshotHolder) -> Snapshot:
    """Re-index the collection incrementally with the snapshot's own model; go live."""
    m = snapshot.manifest
    build(
        snapshot.collection_root,
        settings.data_dir,
        _config(snapshot).with_(
            threads=settings.inference_threads,
            max_pixels=settings.max_pixels,  # the service's own decoding budget
            place_only=True,  # the service has no t-SNE/UMAP: the next `pixscape index` refits
        ),
        onnx_model=(snapshot.model_path, m.model.fingerprint),
    )
    holder.refresh()
    if holder.live is None:
        raise HTTPException(status_code=500, detail=holder.error or "the new snapshot is not live")
    return holder.live.snapshot


@router.post("/api/admin/reload", response_model=ReloadResponse)
async def reload(holder: HolderDep, pool: PoolDep) -> ReloadResponse:
    """Open the snapshot CURRENT names now, instead of at the next poll."""
    swapped = await pool.run(holder.refresh)
    live = holder.live
    return ReloadResponse(
        snapshot=live.snapshot.id if live else None, swapped=swapped, error=holder.error
    )


@router.post(
    "/api/images",
    status_code=201,
    response_model=AddedImages,
    summary="Add images to the collection; searchable and on the map when this returns",
    responses={
        400: {"model": ErrorBody, "description": "a corrupt, truncated or empty image"},
        413: {"model": ErrorBody, "description": "upload over the size limit"},
        415: {"model": ErrorBody, "description": "not an image format we accept"},
        422: {"model": BadAddRequest, "description": "bad label, no files or too many"},
        503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
    },
)
async def add_images(
    live: LiveDep,
    holder: HolderDep,
    pool: PoolDep,
    settings: SettingsDep,
    lock: LockDep,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    label: Annotated[
        str | None, Form(description="folder (label) to store them in; default 'uploads'")
    ] = None,
) -> AddedImages:
    started = time.perf_counter()
    if not 1 <= len(files) <= MAX_FILES:
        raise HTTPException(status_code=422, detail=f"send 1 to {MAX_FILES} files")
    label = label.strip() if label else UPLOADS
    if not _LABEL.match(label):
        raise HTTPException(
            status_code=422, detail="label: 1-64 letters, digits, spaces, '_' or '-'"
        )
    # The whole batch is checked before anything is stored: all or nothing.
    named: list[tuple[str, bytes]] = []
    for upload in files:
        data = await read_upload(upload, settings.max_upload_bytes)
        name = str(upload.filename)  # starlette makes an UploadFile only for a named part
        decoded = await pool.run(decode_upload, data, settings.max_pixels, name)
        digest = hashlib.sha256(data).hexdigest()
        named.append((f"{digest[:20]}{_EXTENSIONS[decoded.format]}", data))
    async with lock:
        current = await _latest(holder)
        folder = current.snapshot.collection_root / label

        def work() -> Snapshot:
            for name, data in named:
                if not (folder / name).exists():  # same content, same name: stored once
                    _store(folder, name, data)
            return _reindex(current.snapshot, settings, holder)

        snapshot = await _run(work)
    rows = {r.path: r for r in snapshot.rows}
    added = [rows.get(f"{label}/{name}") for name, _ in named]
    return AddedImages(
        snapshot=snapshot.id,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        images=[image_ref(r) for r in added if r is not None],
    )


@router.delete(
    "/api/images/{image_id}",
    response_model=RemovedImage,
    summary="Remove an image: its file moves to data/removed/ and a new snapshot goes live",
    responses={
        404: {"model": ErrorBody, "description": "no image with this id"},
        503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
    },
)
async def remove_image(
    holder: HolderDep, settings: SettingsDep, lock: LockDep, image_id: ImageId
) -> RemovedImage:
    started = time.perf_counter()
    async with lock:
        live = await _latest(holder)
        row = live.row(image_id)
        root = Path(os.path.realpath(live.snapshot.collection_root))
        source = Path(os.path.realpath(root / row.path))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = settings.data_dir / "removed" / f"{stamp}-{image_id}" / row.path

        def work() -> Snapshot:
            # The catalog's path, resolved inside the collection only (never a
            # path from the request); a file already gone is simply dropped.
            if source.is_relative_to(root) and source.is_file():
                _move(source, target)
            return _reindex(live.snapshot, settings, holder)

        snapshot = await _run(work)
    return RemovedImage(
        snapshot=snapshot.id,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        id=image_id,
        moved_to=readable(str(target.relative_to(settings.data_dir))),  # names need not be UTF-8
    )
