#!/usr/bin/env bash
# GPU smoke of the veRL plugin (1 GPU, < 8 minutes): 3 GRPO + 3 HeRL steps on a tiny random Qwen2.
# Needs a CUDA torch + vLLM + veRL 0.9.1 already installed on the machine (no network is used).
# Usage (from the repository root):  bash bench/gpu/herl_smoke.sh [WORK_DIR]
# Exit codes: 0 PASS, 1 FAIL (the verdict says why), 3 prerequisites missing (each one listed), 124 timeout.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-${OUT:-/tmp}/herl_smoke}"
PY="${PYTHON:-python}"

# herl itself, editable, without touching the machine's packages (registers the verl.plugins entry
# point); the prerequisite check below reports it if this did not work.
if ! "$PY" -c "from importlib.metadata import entry_points as e; assert any(p.name=='herl' for p in e(group='verl.plugins'))" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . || "$PY" -m pip install -q --no-deps -e . || true
fi

mkdir -p "$WORK"
echo "== smoke (work dir $WORK)"
# The script checks every prerequisite first (modules, a CUDA device, the plugin) and exits 3 naming each.
timeout 470 "$PY" bench/gpu/herl_smoke.py --work "$WORK" --timeout 215
