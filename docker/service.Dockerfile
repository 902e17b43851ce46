# pixscape service image: the HTTP API and the web page, with no torch.
#
# It installs the distribution without extras (`pip install .`): numpy, pillow,
# onnxruntime, faiss-cpu, FastAPI, uvicorn, scipy. Queries are embedded with the
# snapshot's own model.onnx, so the indexer extra (torch, the layout libraries) is
# never needed here; the build fails if torch sneaks in.
#
# Build: docker build -f docker/service.Dockerfile -t pixscape-service .
#
# The base is pinned by its full tag (Python patch release + Debian release). The
# machines this was written on cannot reach a container registry, so the digest
# could not be resolved; where one can, pin it as well:
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same uid in both images: they share the data volume.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/pixscape pixscape \
 && mkdir -p /srv/pixscape/images /srv/pixscape/data \
 && chown pixscape:pixscape /srv/pixscape/data

# Only what the wheel is built from (the README is the package's long description).
COPY pyproject.toml README.md LICENSE /tmp/src/
COPY indexer /tmp/src/indexer
COPY service /tmp/src/service
RUN pip install /tmp/src \
 && rm -rf /tmp/src \
 && if python -c "import torch" 2>/dev/null; then echo "torch must not be in the service image" >&2; exit 1; fi \
 && python -c "import service.app"

# The page (service/web) is package data of the wheel: nothing to copy beside it.
ENV PIXSCAPE_DATA_DIR=/srv/pixscape/data

USER pixscape
WORKDIR /home/pixscape
EXPOSE 8000
# Healthy once a snapshot is live (/api/health answers "ok"; "no snapshot" means
# every search would be a 503). No curl in slim images: Python's urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import json, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4); sys.exit(json.load(r)['status'] != 'ok')"]
# Inside a container the service must listen on every interface; publish the port
# on the host's loopback only (docker-compose.yml does), or put a proxy in front.
CMD ["pixscape", "serve", "--data", "/srv/pixscape/data", "--host", "0.0.0.0", "--port", "8000"]
