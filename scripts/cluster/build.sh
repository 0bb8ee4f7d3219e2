#!/usr/bin/env bash
# Build the real control plane's binaries from the pinned Go tools modules (tools/cluster/*), once:
# they are cached under ~/.cache/herl/cluster/<module>-<key>/ where key hashes go.mod, go.sum and the
# Go version, so a warm run only checks the stamp. Prints the bin folder of each module, one a line,
# as `NAME=PATH` (the Python side reads these). Cold: tens of minutes on 2 cores; warm: < 1 s.
#
# Usage: scripts/cluster/build.sh [MODULE ...]    (default: every module in tools/cluster)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${HERL_CACHE:-$HOME/.cache/herl}/cluster
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH (Go >= 1.26 is needed to build the control plane)" >&2; exit 2; }

mods=("$@")
if [ ${#mods[@]} -eq 0 ]; then
  mapfile -t mods < <(cd "$root/tools/cluster" && ls -d */ | tr -d /)
fi

for mod in "${mods[@]}"; do
  src="$root/tools/cluster/$mod"
  [ -f "$src/go.mod" ] || { echo "build.sh: no module tools/cluster/$mod" >&2; exit 2; }
  ldflags="-s -w"
  kver=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$src/go.mod")
  if [ -n "$kver" ]; then
    # Without the stamp the servers report v0.0.0 and clients (kubectl, helm) refuse or warn.
    minor=$(echo "$kver" | cut -d. -f2)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
  fi
  # The key covers what decides the binaries: pins (go.mod, go.sum), the Go toolchain, the link flags.
  key=$( (cat "$src/go.mod" "$src/go.sum"; go version; echo "$ldflags") | sha256sum | cut -c1-12)
  out="$cache/$mod-$key"
  if [ ! -f "$out/.done" ]; then
    mapfile -t tools < <(sed -n 's/^tool //p' "$src/go.mod")
    echo "build.sh: building $mod (${#tools[@]} binaries) into $out; the first build takes tens of minutes" >&2
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    (cd "$src" && go mod download)
    start=$(date +%s)
    # -v names each package as it is compiled: a line every 100 packages shows progress.
    (cd "$src" && go build -v -ldflags "$ldflags" -o "$out.tmp/" "${tools[@]}") 2>&1 |
      awk -v m="$mod" -v s="$start" '{n++} n%100==0 {printf "build.sh: %s: %d packages compiled (%ds)\n", m, n, systime()-s; fflush()}
        /^(#|.*: )/ && !/^[a-z0-9.\/_-]+$/ {print; fflush()}' >&2
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "build.sh: go build of $mod failed" >&2; exit 1; }
    # `go build` names a binary after its import path (less a /vN suffix): etcd's is "server".
    if [ -f "$out.tmp/server" ]; then mv "$out.tmp/server" "$out.tmp/etcd"; fi
    if [ -f "$out.tmp/ray-operator" ]; then mv "$out.tmp/ray-operator" "$out.tmp/kuberay-operator"; fi
    touch "$out.tmp/.done"
    rm -rf "$out" && mv "$out.tmp" "$out"
    echo "build.sh: $mod built in $(( $(date +%s) - start )) s" >&2
  fi
  echo "$mod=$out"
done
