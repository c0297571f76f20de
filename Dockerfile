# syntax=docker/dockerfile:1
# atproto-hma-labeler: `docker build -t atproto-hma-labeler .` (compose.yaml builds it for you).
#
# Two stages: the builder has a C++ compiler because pdqhash and vpdq ship only sdists (vpdq compiles against
# FFmpeg's libav* headers); the runtime image gets the finished wheels, FFmpeg (ffprobe, and the libraries vpdq
# links), the Alembic migrations and a non-root user. Keys and data live on volumes, never in the image.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ cmake pkg-config libavcodec-dev libavformat-dev \
        libavutil-dev libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# README.md is the package's long description (pyproject `readme`), so the build needs it.
COPY pyproject.toml README.md ./
COPY labeler ./labeler
# Wheels for the project and every dependency, built here (pdqhash is compiled) and installed offline below.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[video]"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# FFmpeg: ffprobe checks every video before it is decoded, and vpdq decodes with these libav* libraries.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so volume ownership and `runAsNonRoot` policies are predictable; /keys is private to it.
RUN groupadd --system --gid 10001 labeler \
    && useradd --system --uid 10001 --gid labeler --home-dir /data --no-create-home --shell /usr/sbin/nologin labeler \
    && mkdir -p /data /keys /app \
    && chown labeler:labeler /data /keys \
    && chmod 0700 /keys
# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "atproto-hma-labeler[video]"
# The installed package is in site-packages, away from the source tree's migrations/: point at our copy.
COPY migrations /app/migrations
ENV LABELER_HOST=0.0.0.0 \
    LABELER_PORT=8080 \
    LABELER_DATABASE_URL=sqlite+aiosqlite:////data/labeler.db \
    LABELER_KEYS_DIR=/keys \
    LABELER_MIGRATIONS_DIR=/app/migrations \
    LABELER_LOG_FORMAT=json
WORKDIR /data
VOLUME ["/data", "/keys"]
USER 10001:10001
EXPOSE 8080
# Readiness (the database answers). No curl in slim images, so Python asks; urlopen raises on a 503.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/xrpc/_health' % os.environ.get('LABELER_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["labeler"]
CMD ["serve"]
