# syntax=docker/dockerfile:1
# Ultra Gateway: pinned runtime packages only, non-root, health-checked on the port it binds.
#
#   docker build -t ultra-gateway .
#   docker run -p 8000:8000 ultra-gateway                      # the built-in mock fleet
#   docker run -p 9000:9000 -e ULTRA_PORT=9000 -v ./my.yaml:/etc/ultra/config.yaml:ro \
#       -e ULTRA_CONFIG=/etc/ultra/config.yaml -e OPENAI_API_KEY ultra-gateway
#
# Layers: the pinned dependencies (requirements/runtime.txt, from `python requirements/lock.py`) are installed
# before any source is copied, so a code change rebuilds only the small last layer. The port is ULTRA_PORT
# (the server and the health check both read it); pin the base image by digest in your own registry if you
# need byte-for-byte rebuilds: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- the wheel: built from the source, in its own stage, so the image never holds build tools ---------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/build.txt /tmp/build.txt
RUN pip install --no-deps -r /tmp/build.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY strategies ./strategies
COPY gateway ./gateway
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# --- the image ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ULTRA_PORT=8000

# Dependency layer: changes only when requirements/runtime.txt does.
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --no-deps -r /tmp/runtime.txt && rm /tmp/runtime.txt \
    && useradd --create-home --uid 10001 --user-group ultra

# Source layer: the gateway's own wheel, nothing else.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels pip install --no-deps /wheels/*.whl

USER 10001:10001
WORKDIR /home/ultra
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["ultra-gateway", "healthcheck"]
CMD ["ultra-gateway", "serve", "--host", "0.0.0.0"]
