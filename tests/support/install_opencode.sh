#!/usr/bin/env bash
# Install the pinned opencode agent (npm package opencode-ai) for the tests.
#
#   tests/support/install_opencode.sh CACHE_DIR
#
# Installs with npm into CACHE_DIR (npm --prefix): opencode-ai and the one platform package
# that carries the native binary for this machine (opencode-linux-x64, ...-baseline when the
# CPU has no AVX2, ...-musl on musl), both at OPENCODE_VERSION. Install scripts are not run:
# opencode-ai's postinstall only copies that binary next to its launcher, so CACHE_DIR/bin/opencode
# is linked to the platform package's binary instead. Nothing else is needed at run time: the
# binary bundles the AI SDK providers (@ai-sdk/openai-compatible included); the one package it
# would fetch at start, @opencode-ai/plugin for its config dir, is skipped by the marker files
# that tests/support/opencode.py writes into the private config dir.
#
# Idempotent: when CACHE_DIR already holds this version it only prints the path. The last line
# on stdout is the path of the opencode binary; npm's output goes to stderr.
set -euo pipefail

OPENCODE_VERSION=1.18.33

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)

case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) echo "install_opencode: unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "install_opencode: unsupported CPU $(uname -m)" >&2; exit 1 ;;
esac
pkg="opencode-$os-$arch"
if [ "$os" = linux ] && [ "$arch" = x64 ] && ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    pkg="$pkg-baseline"
fi
if [ "$os" = linux ] && { [ -e /etc/alpine-release ] || ldd --version 2>&1 | grep -qi musl; }; then
    pkg="$pkg-musl"
fi

binary="$cache/node_modules/$pkg/bin/opencode"
link="$cache/bin/opencode"
stamp="$cache/.installed"
want="opencode-ai@$OPENCODE_VERSION $pkg@$OPENCODE_VERSION"

installed() {
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$link" ] &&
        [ "$("$link" --version 2>/dev/null)" = "$OPENCODE_VERSION" ]
}

if installed; then
    echo "$link"
    exit 0
fi

# One installer at a time per cache dir (two test runs may start together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/.lock"
    flock 9
    if installed; then
        echo "$link"
        exit 0
    fi
fi

command -v npm >/dev/null 2>&1 || { echo "install_opencode: npm not found" >&2; exit 1; }

rm -f "$stamp"
cat >"$cache/package.json" <<EOF
{
  "name": "sessiond-test-opencode",
  "private": true,
  "dependencies": {
    "opencode-ai": "$OPENCODE_VERSION",
    "$pkg": "$OPENCODE_VERSION"
  }
}
EOF
# --omit=optional: opencode-ai lists every platform package as optional (two match linux-x64,
# 180 MB each); the one needed is a direct dependency above.
(cd "$cache" && npm install --prefix "$cache" --omit=optional --ignore-scripts --no-audit \
    --no-fund --no-update-notifier --loglevel=error) >&2

if [ ! -x "$binary" ]; then
    echo "install_opencode: $binary missing after npm install" >&2
    exit 1
fi
mkdir -p "$cache/bin"
ln -sfn "../node_modules/$pkg/bin/opencode" "$link"
got=$("$link" --version 2>/dev/null || true)
if [ "$got" != "$OPENCODE_VERSION" ]; then
    echo "install_opencode: $link --version says '$got', wanted $OPENCODE_VERSION" >&2
    exit 1
fi
echo "$want" >"$stamp"
echo "$link"
