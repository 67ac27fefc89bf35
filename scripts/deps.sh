#!/usr/bin/env bash
# Installs every Debian package that cairn's build, tests, benchmarks and scripts use (run as
# root on Debian 12). Quiet and quick when everything is already there.
#
#   build        clang libclang-dev pkg-config ccache (RocksDB's C++ and its bindings)
#   mount        fuse3 (fusermount3, /dev/fuse)
#   tests        golang-go (regenerates kubo's 100 MiB vector inputs with Go's math/rand),
#                rsync attr (getfattr) diffutils findutils coreutils util-linux (setpriv)
#                python3 (mmap check, http.server), procps
#   app tests    gcc libc6-dev (programs built into a placeholder prefix), nginx (serves a
#                webapp from the mount), chromium (loads it headless, runs its JavaScript)
#   benchmarks   squashfuse squashfs-tools (the squashfuse reference in bench/mount.py)
#   git          git >= 2.44 (git-remote-cairn's tests: sha256 repositories, core.maxTreeDepth),
#                openssh-client (ssh-keygen signs tags and commits in them), iproute2 (tc,
#                ip netns: bench/git.py --swarm)
set -euo pipefail
pkgs=(
    clang libclang-dev pkg-config ccache
    fuse3
    golang-go rsync attr diffutils findutils coreutils util-linux python3 procps
    gcc libc6-dev nginx chromium
    squashfuse squashfs-tools
    git openssh-client iproute2
)
need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Fail loudly here, not halfway through the suite, if a program the tests run is missing.
for prog in clang ccache fusermount3 go rsync getfattr diff find setpriv python3 mksquashfs squashfuse \
    gcc nginx chromium git ssh-keygen tc; do
    command -v "$prog" >/dev/null 2>&1 || { echo "deps.sh: $prog is still missing" >&2; exit 1; }
done
# Debian 12's own git is 2.39: git-remote-cairn's checks rely on git's tree depth limit (2.44).
git_version=$(git version | awk '{print $3}')
if [ "$(printf '%s\n2.44\n' "$git_version" | sort -V | head -1)" != "2.44" ]; then
    echo "deps.sh: git $git_version (first on PATH) is older than 2.44, which the git tests need" >&2
    exit 1
fi
