# syntax=docker/dockerfile:1
# tilewright's image: the wheels only (built in a builder stage, at constraints.txt's versions), a non-root user,
# `tilewright serve` on 0.0.0.0:8000 by default (`tilewright worker` for a Celery worker), a healthcheck on
# /healthz, the state in the /data volume, every setting from the environment (TILEWRIGHT_*, see
# docs/configuration.md). docs/deploy.md has the commands.
#
#   docker build -t tilewright .        # or podman build
#   docker run -p 8000:8000 -v tilewright-data:/data tilewright
ARG BASE=python:3.11-slim
ARG NODE_BASE=node:20-slim

# -- the web page's viewer (OpenSeadragon, from the npm registry; never committed) ------------------------------
FROM ${NODE_BASE} AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && mkdir /osd && cp -r node_modules/openseadragon/build/openseadragon/. /osd/

# -- every dependency and tilewright itself as wheels -----------------------------------------------------------
FROM ${BASE} AS builder
ARG EXTRAS=postgres
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".[${EXTRAS}]"

# -- the image: the wheels installed, nothing else of the build ------------------------------------------------
FROM ${BASE}
ARG EXTRAS=postgres
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/src/constraints.txt,target=/constraints.txt \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels -c /constraints.txt "tilewright[${EXTRAS}]" \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home tilewright \
    && mkdir -p /data && chown tilewright:tilewright /data
COPY --from=web /osd /opt/openseadragon
ENV TILEWRIGHT_HOST=0.0.0.0 \
    TILEWRIGHT_PORT=8000 \
    TILEWRIGHT_DATA_DIR=/data \
    TILEWRIGHT_OPENSEADRAGON_DIR=/opt/openseadragon \
    PYTHONUNBUFFERED=1
VOLUME /data
WORKDIR /data
USER tilewright
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TILEWRIGHT_PORT', '8000'), timeout=4)"
ENTRYPOINT ["tilewright"]
CMD ["serve"]
