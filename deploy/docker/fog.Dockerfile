# syntax=docker/dockerfile:1
# marlids fog coordinator: gRPC endpoint for the edges, shared defender policy (torch, CPU), alerts
# posted to the cloud. No Ray. Build from the repository root (amd64 and arm64):
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/docker/fog.Dockerfile \
#       -t REGISTRY/marlids-fog:0.1.0 --push .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 XDG_CACHE_HOME=/var/lib/marlids
WORKDIR /src
# torch first, as scripts/setup.sh does (--build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index>).
ARG PIP_EXTRA_INDEX_URL
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY marlids marlids
COPY edge edge
COPY fog fog
COPY cloud cloud
COPY training training
COPY experiments experiments
COPY models models
RUN pip install --no-cache-dir "./[fog]" \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/marlids --create-home marlids
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["marlids", "fog", "serve", "--listen", "0.0.0.0:50051", "--policy", "/src/models/defender"]
CMD ["--help"]
