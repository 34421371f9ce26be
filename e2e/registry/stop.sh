#!/usr/bin/env bash
# Stop a registry started by e2e/registry/start.sh and remove its directory.
#
#   stop.sh DIR
#
# Kills exactly the process recorded in DIR/registry.pid (and waits up to 5 s
# for it to exit). Safe to call twice.
set -euo pipefail

DIR=${1:?usage: stop.sh DIR}
[[ -d $DIR ]] || exit 0
[[ -f $DIR/config.yml ]] || { echo "[registry] $DIR is not a registry directory; left alone" >&2; exit 1; }
if [[ -f $DIR/registry.pid ]]; then
  PID=$(cat "$DIR/registry.pid")
  if [[ $PID =~ ^[0-9]+$ ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$PID" 2>/dev/null || true
  fi
fi
rm -rf "$DIR"
