# pixscape indexer image: `pixscape index` with the indexer extra (torch, for the
# one-off ONNX export, and the t-SNE / UMAP / clustering libraries).
#
# Build: docker build -f docker/indexer.Dockerfile -t pixscape-indexer .
#        docker build -f docker/indexer.Dockerfile --build-arg DEVICE=cuda -t pixscape-indexer:cuda .
#
# torch comes from PyTorch's CPU index: on PyPI the Linux torch wheel is the CUDA
# build, with several GB of NVIDIA libraries that nothing here uses (torch only
# exports the model, once, on the CPU; inference is onnxruntime). pip then finds
# torch==2.13.0 satisfied by 2.13.0+cpu when it installs `.[indexer]`.
#
# DEVICE=cuda swaps onnxruntime for onnxruntime-gpu with its CUDA and cuDNN pip
# packages, so embedding runs on an NVIDIA GPU when the container gets one
# (docker-compose.gpu.yml); the host needs only the driver and the NVIDIA
# Container Toolkit. onnxruntime-gpu is built for CUDA 13 (driver 580 or newer)
# and its newest release on PyPI (1.31.1) is one behind onnxruntime's (1.32.0).
#
# The base is pinned by its full tag (Python patch release + Debian release). The
# machines this was written on cannot reach a container registry, so the digest
# could not be resolved; where one can, pin it as well:
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
FROM python:3.11.14-slim-bookworm

ARG DEVICE=cpu
# A mirror of PyTorch's CPU index may stand in; the build checks torch is a CPU build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG ORT_GPU_VERSION=1.31.1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same uid in both images: they share the data volume.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/pixscape pixscape \
 && mkdir -p /srv/pixscape/images /srv/pixscape/data \
 && chown pixscape:pixscape /srv/pixscape/data

# A layer of its own: the largest download, and it changes only with the pin.
RUN case "$DEVICE" in cpu|cuda) ;; *) echo "DEVICE must be cpu or cuda" >&2; exit 1;; esac \
 && pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0

COPY pyproject.toml README.md LICENSE /tmp/src/
COPY indexer /tmp/src/indexer
COPY service /tmp/src/service
RUN pip install "/tmp/src[indexer]" \
 && rm -rf /tmp/src \
 && if [ "$DEVICE" = cuda ]; then \
      pip uninstall -y onnxruntime \
      && pip install "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU_VERSION"; \
    fi \
 && python -c "import torch; assert torch.version.cuda is None, 'expected the CPU build of torch'" \
 && python -c "import indexer.build, indexer.models"

# numba (UMAP) caches compiled code; site-packages is not writable by the user.
ENV NUMBA_CACHE_DIR=/home/pixscape/.cache/numba

USER pixscape
WORKDIR /home/pixscape
# The collection is mounted read-only at /srv/pixscape/images and the data volume at
# /srv/pixscape/data, at the same paths as in the service image: the manifest
# records the collection's absolute path, and the service's admin API re-indexes it.
# `--device auto` (the default) uses CUDA when onnxruntime has it.
CMD ["pixscape", "index", "/srv/pixscape/images", "--data", "/srv/pixscape/data"]
