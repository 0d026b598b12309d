# syntax=docker/dockerfile:1
# marlids training: RLlib MAPPO on a Ray cluster (head and workers run this image; KubeRay's RayJob in
# deploy/k8s/ uses it). The Ray base image pins Ray 2.60.0 (= the `rl` extra); the -gpu variant has CUDA
# for the GPU worker group (`marlids train mappo --num-gpus-per-learner 1`). Build (amd64):
#   docker buildx build --platform linux/amd64 -f deploy/docker/training.Dockerfile \
#       -t REGISTRY/marlids-training:0.1.0 --push .
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${RAY_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /home/ray/marlids
# torch first (the CUDA build from the default index on the -gpu image).
RUN pip install --no-cache-dir torch==2.13.0
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users marlids marlids
COPY --chown=ray:users edge edge
COPY --chown=ray:users fog fog
COPY --chown=ray:users cloud cloud
COPY --chown=ray:users training training
COPY --chown=ray:users experiments experiments
COPY --chown=ray:users data/captures data/captures
RUN pip install --no-cache-dir "./[ml,rl]"
USER 1000:100
CMD ["marlids", "train", "mappo", "--help"]
