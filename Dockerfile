# Ultra Gateway: slim, non-root, health-checked. Runs the built-in mock fleet unless ULTRA_CONFIG or
# --config points at a mounted file, e.g. `docker run -v ./my.yaml:/etc/ultra.yaml -e ULTRA_CONFIG=/etc/ultra.yaml`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY strategies ./strategies
COPY config ./config
RUN pip install . && rm -rf /src && useradd --create-home --uid 10001 ultra

USER ultra
WORKDIR /home/ultra
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["ultra-gateway", "serve", "--host", "0.0.0.0"]
