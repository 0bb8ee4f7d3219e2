#!/usr/bin/env bash
# GPU smoke of the veRL plugin (1 GPU, < 8 minutes): 3 GRPO + 3 HeRL steps on a tiny random Qwen2.
# Needs a CUDA torch + vLLM + veRL 0.9.1 already installed on the machine (no network is used).
# Usage (from the repository root):  bash bench/gpu/herl_smoke.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-${OUT:-/tmp}/herl_smoke}"
PY="${PYTHON:-python}"

echo "== environment"
"$PY" - <<'EOF'
import importlib, sys
missing = []
for mod in ("torch", "vllm", "verl", "ray", "transfer_queue", "tensordict", "transformers", "tokenizers",
            "pandas", "pyarrow", "hydra", "pydantic", "yaml"):
    try:
        m = importlib.import_module(mod)
        print(f"  {mod} {getattr(m, '__version__', '')}")
    except Exception as exc:  # report every missing piece at once
        missing.append(f"{mod} ({exc.__class__.__name__}: {exc})")
import torch
print("  cuda:", torch.cuda.is_available(), torch.cuda.device_count())
if missing or not torch.cuda.is_available():
    print("MISSING:", "; ".join(missing) or "a CUDA device", file=sys.stderr)
    sys.exit(3)
EOF

# herl itself, editable, without touching the machine's packages (registers the verl.plugins entry point).
if ! "$PY" -c "from importlib.metadata import entry_points as e; assert any(p.name=='herl' for p in e(group='verl.plugins'))" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . || "$PY" -m pip install -q --no-deps -e .
fi
"$PY" -c "import verl; from verl.trainer.ppo import core_algos; core_algos.get_policy_loss_fn('herl_mixpolicy'); print('  plugin: herl_mixpolicy registered via import verl')"

mkdir -p "$WORK"
echo "== smoke (work dir $WORK)"
timeout 470 "$PY" bench/gpu/herl_smoke.py --work "$WORK" --timeout 215
