# syntax=docker/dockerfile:1
# marlids edge daemon — slim and torch-free: NFStream → windows → ONNX MiniLM (int8) + ONNX temporal
# scorer → Observations → gRPC stream to the fog. No torch, no Ray, no FastAPI in the runtime image.
#
# Multi-arch build (amd64 + arm64: Raspberry Pi 4 / Jetson), from the repository root:
#   docker buildx create --use --name marlids   # once; a builder with QEMU binfmt for arm64
#   docker buildx build --platform linux/amd64,linux/arm64 \
#       -f deploy/docker/edge.Dockerfile -t REGISTRY/marlids-edge:0.1.0 --push .
# (a single-arch local image: --platform linux/arm64 --load)
#
# Stage "models" runs on the build machine's own platform ($BUILDPLATFORM): it installs torch once and
# writes the ONNX files (architecture-independent) with `marlids edge export-onnx`; the runtime stage
# of every target platform copies them. Nothing is downloaded when the container runs.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM --platform=$BUILDPLATFORM ${PYTHON_IMAGE} AS models
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /src
# torch first, as scripts/setup.sh does; --build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index>
# picks the CPU-only wheels explicitly.
ARG PIP_EXTRA_INDEX_URL
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY marlids marlids
COPY edge edge
COPY fog fog
COPY cloud cloud
COPY training training
COPY experiments experiments
RUN pip install --no-cache-dir "./[ml]"
# The bundled defender policy's fusion.json (scaler + scorer) travels with the MiniLM files.
COPY models models
RUN marlids edge export-onnx --out /opt/marlids/models --fusion models/defender

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 MARLIDS_EDGE_BACKEND=onnx MARLIDS_EDGE_MODELS=/opt/marlids/models \
    XDG_CACHE_HOME=/var/lib/marlids
# libpcap for live capture (NFStream / scapy); nothing else from Debian.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY marlids marlids
COPY edge edge
COPY fog fog
COPY cloud cloud
COPY training training
COPY experiments experiments
RUN pip install --no-cache-dir "./[edge]" \
    && python -c "import importlib.util as u, sys; sys.exit([m for m in ('torch', 'ray') if u.find_spec(m)])"
COPY --from=models /opt/marlids/models /opt/marlids/models
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/marlids --create-home marlids
USER 10001:10001
WORKDIR /var/lib/marlids
# Replay:  docker run IMAGE --pcap /data/site_a.pcap --fog fog:50051 --site site_a --insecure
# Live:    docker run --network host --user 0 --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN \
#              IMAGE --iface eth0 --fog fog.example:50051 --site site_a --tls-ca ... (see docs/deploy.md)
ENTRYPOINT ["marlids", "edge", "run", "--fusion", "/opt/marlids/models"]
CMD ["--help"]
