#!/usr/bin/env bash
# The README's first command: build the local test image (no registry is reachable on a fresh
# machine) and run the berth agent on the hello example. Ctrl-C stops the agent; the container
# keeps running (agent stop is not workload stop). Try: curl http://127.0.0.1:8088/
#
# Usage: bash e2e/quickstart.sh [EXAMPLE]   (EXAMPLE: hello (default) or blog)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
example=${1:-hello}
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! docker info >/dev/null 2>&1; then
  echo "error: the Docker Engine is not reachable ('docker info' fails); start dockerd first" >&2
  exit 1
fi
case $example in
  hello) bash e2e/images/build.sh busybox ;;
  blog) bash e2e/images/build.sh services ;;
  *) echo "error: unknown example '$example' (hello or blog)" >&2; exit 2 ;;
esac
cargo build --release -p berth
echo "==> berth agent on manifests/examples/$example (Ctrl-C to stop; containers keep running)"
# `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it (already built above).
exec cargo run -q --release -p berth -- agent --manifests "manifests/examples/$example"
