#!/usr/bin/env bash
# One idempotent set-up for a fresh machine of ours (Debian, Python >= 3.11, root, PyPI + Debian only).
# Re-running it is cheap: each step checks first.
#
#   scripts/setup.sh [full|demo]        (or HERL_SETUP_PROFILE=full|demo; default full)
#
#   full  what `make test` needs: a venv with torch, the package with every CPU extra (operator, train
#         with veRL, dev, bench), Prometheus from Debian, and the offline assets (NLTK data, helm,
#         IFEval/IFBench prompts).
#   demo  what `make demo` needs and nothing more: torch and the local engine (herl[local]: transformers,
#         the IF checkers, matplotlib; no veRL, operator, test tools or Prometheus) and the NLTK data.
#         A venv set up in full already satisfies demo.
#
# Packages install with uv (parallel downloads, a shared cache: torch took 2 min 41 s with pip, 33 s with
# uv, measured in docs/benchmarks.md), itself installed into the venv from PyPI; pip if uv cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-${HERL_SETUP_PROFILE:-full}}
case "$profile" in
  full) extras="operator,train,dev,bench"; assets="nltk helm eval-data" ;;
  demo) extras="local"; assets="nltk" ;;
  *) echo "setup: unknown profile '$profile' (allowed: full, demo)" >&2; exit 2 ;;
esac
# The repo's operator/ folder (import name herl_operator) would shadow the standard library's
# `operator` for any `python -m ...` run from the repo root, since that puts the current directory
# first on sys.path. PYTHONSAFEPATH (Python >= 3.11) stops that.
export PYTHONSAFEPATH=1
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
want=$(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -c1-16)
stamp_of() { echo "$VENV/.herl-setup-$1"; }
done_for() { # is the venv set up for profile $1 (full covers demo)?
  [ "$(cat "$(stamp_of "$1")" 2>/dev/null)" = "$want" ] || { [ "$1" = demo ] && done_for full; }
}

# A CPU torch wheel on disk (pip's find-links, or HERL_WHEELS) is installed as that file; without one,
# torch comes from PyPI (its Linux wheel carries CUDA libraries: larger, and it runs on a CPU as well).
cpu_torch_wheel() {
  local d w
  for d in ${HERL_WHEELS:-} ${PIP_FIND_LINKS:-}; do
    for w in "$d"/torch-2.13.0+cpu-*.whl; do
      if [ -f "$w" ]; then echo "$w"; return 0; fi
    done
  done
  return 0  # none: the caller installs torch==2.13.0 from the index
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if ! done_for "$profile"; then
  echo "setup: installing Python packages for '$profile' (torch 2.13.0 first, then herl[$extras])"
  if [ ! -x "$VENV/bin/uv" ] && ! "$VENV/bin/python" -m pip install -q uv; then
    echo "setup: uv not available; installing with pip (slower)" >&2
  fi
  install() {
    if [ -x "$VENV/bin/uv" ]; then
      "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "$@"
    else
      "$VENV/bin/python" -m pip install -q "$@"
    fi
  }
  torch_req=$(cpu_torch_wheel)
  install "${torch_req:-torch==2.13.0}"
  # Repeat the pin so nothing upgrades torch while resolving the rest.
  install -e ".[$extras]" "torch==2.13.0"
  # Belt and braces for people who run `python -m pytest` from the repo root without PYTHONSAFEPATH:
  # site imports this .pth before the current directory joins sys.path, pinning the stdlib module.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import operator  # herl: pin the stdlib module before the repo's operator/ folder can shadow it" \
    > "$site/herl_pin_stdlib_operator.pth"
  echo "$want" > "$(stamp_of "$profile")"
fi

# Prometheus + promtool (Debian) for the metrics tests; no systemd here, tests start it by hand.
if [ "$profile" = full ] && { ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; }; then
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
# shellcheck disable=SC2086  # the asset names are words
"$VENV/bin/python" -m herl.assets fetch $assets
