# Sourced by the scripts: where builds go and how C/C++ is compiled.
# A persistent target directory outside the clone, and ccache in front of the C/C++ compiler:
# RocksDB's 14 minutes of C++ are then paid once per machine, even when a change of
# dependencies makes cargo re-run its build script.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
if command -v ccache >/dev/null 2>&1; then
    export CC="ccache cc" CXX="ccache c++"
    export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
fi
