#!/usr/bin/env bash
# Installs the Debian packages cairn builds and tests with (run as root on Debian 12).
# Quiet and quick when everything is already there.
set -euo pipefail
need=()
for p in clang libclang-dev pkg-config ccache fuse3 golang-go; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
