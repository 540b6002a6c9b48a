#!/usr/bin/env bash
# The end-to-end demo on a CPU: train the tiny model (cached), convert the held-out SMS
# messages (the 20% it never trained on), label them under both policies with the real vLLM
# engine, score the labels against gold, and write the HTML report (demo/report.html, with a
# screenshot in demo/report.png where Chromium is installed).
# Sets up .venv first when it is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_dev.sh --if-needed
SHARED=${SAFEGUARD_SHARED:-../shared}
export TIKTOKEN_ENCODINGS_BASE=${TIKTOKEN_ENCODINGS_BASE:-$SHARED/vocab}
PY=.venv/bin/python
MODEL=demo/tiny-safeguard
if [ ! -f "$MODEL/tiny_model.json" ]; then
  $PY scripts/make_tiny_model.py "$MODEL" --train --data-dir "$SHARED/data"
fi
rm -rf demo/sms demo/labels
$PY scripts/sms_to_parquet.py demo/sms --shards 4 --split heldout \
  --source "$SHARED/data/sms-spam-collection/SMSSpamCollection"
.venv/bin/safeguard-batch label \
  --input demo/sms \
  --policy policies/spam.md --policy policies/harassment.md \
  --model "$MODEL" --output demo/labels \
  --max-model-len 4096 --max-tokens 256 --temperature 0
# --temperature 0: the tiny model is not confident enough to stay well-formed when sampling
# at 1.0 over a 201k-token vocabulary (real gpt-oss-safeguard is run at the default 1.0).
.venv/bin/safeguard-batch eval --labels demo/labels --gold demo/sms --json demo/eval.json
.venv/bin/safeguard-batch report demo/labels --gold demo/sms --html demo/report.html
if command -v chromium >/dev/null 2>&1; then
  $PY scripts/headless.py demo/report.html --screenshot demo/report.png >/dev/null
  echo "screenshot: demo/report.png" >&2
fi
