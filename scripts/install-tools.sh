#!/usr/bin/env bash
# Builds the pinned third-party Go tools (buf, grpcurl, grpc-health-probe, ghz) into a cache
# outside the repository, so repeat runs are instant. Versions come from .env.
#
#   TOOLS_DIR   where binaries go (default: ~/.cache/user-service/tools/bin)
#
# Each binary is stored under a versioned name (buf-v1.75.0) and symlinked to its plain
# name, so bumping a version in .env rebuilds only that tool.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
set -a; . ./.env; set +a

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/user-service/tools/bin}"
mkdir -p "$TOOLS_DIR"

build() {  # build NAME MODULE_PATH VERSION
  local name=$1 module=$2 version=$3
  local target="$TOOLS_DIR/$name-$version"
  if [ ! -x "$target" ]; then
    echo "building $name $version" >&2
    local tmp; tmp=$(mktemp -d)
    GOBIN="$tmp" CGO_ENABLED=0 go install "$module@$version"
    mv "$tmp/$(basename "$module")" "$target"
    rm -rf "$tmp"
  fi
  ln -sf "$target" "$TOOLS_DIR/$name"
}

build buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
build grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
build grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe "$GRPC_HEALTH_PROBE_VERSION"
build ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION"
echo "$TOOLS_DIR"
