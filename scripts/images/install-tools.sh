#!/usr/bin/env bash
# The daemonless image tools `make images` and the image tests need, from Debian: buildah (build and run
# images without a Docker engine), skopeo (OCI archives and registries), debootstrap (a base image made
# from Debian where no registry can be reached). Idempotent: a machine that has them returns at once.
# A tool that cannot be installed fails with the reason (no Docker fallback hides it: the tests need them).
set -euo pipefail
missing=()
for tool in buildah skopeo debootstrap; do  # each tool's Debian package has the tool's name
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools.sh: ${missing[*]} missing; install the Debian packages as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-tools.sh: installing ${missing[*]} from Debian" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for tool in "${missing[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-tools.sh: $tool still missing after apt-get install" >&2; exit 1; }
done
