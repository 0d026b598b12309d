# syntax=docker/dockerfile:1
# marlids cloud: FastAPI analyst API (alerts, ATT&CK mapping, explanations, dashboard) on PostgreSQL
# (DATABASE_URL) or SQLite. Build from the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/cloud.Dockerfile \
#       -t REGISTRY/marlids-cloud:0.1.0 --push .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MARLIDS_CLOUD_HOST=0.0.0.0 MARLIDS_CLOUD_PORT=8080
WORKDIR /src
COPY pyproject.toml README.md ./
COPY marlids marlids
COPY edge edge
COPY fog fog
COPY cloud cloud
COPY training training
COPY experiments experiments
RUN pip install --no-cache-dir "./[cloud]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/marlids --create-home marlids
USER 10001:10001
WORKDIR /var/lib/marlids
EXPOSE 8080
# Liveness of the server itself on loopback: HTTPS when MARLIDS_CLOUD_TLS_CERT is set (certificate not
# verified here: nothing secret is sent; docker-compose.yml checks it against the CA).
HEALTHCHECK --interval=15s --timeout=3s --retries=5 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; tls = bool(os.environ.get('MARLIDS_CLOUD_TLS_CERT')); r.urlopen(('https' if tls else 'http') + '://127.0.0.1:8080/healthz', timeout=2, context=ssl._create_unverified_context() if tls else None)"]
ENTRYPOINT ["marlids", "cloud", "serve"]
