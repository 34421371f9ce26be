#!/usr/bin/env bash
# Start a private, password-protected image registry (Docker's registry v2,
# Debian package docker-registry) on 127.0.0.1, in the background, for tests.
#
#   start.sh [--port N] [--user U] [--password P] [--dir DIR] [--ttl SECONDS]
#
# Everything lives in DIR (default: a new temporary directory): config.yml,
# htpasswd (bcrypt), data/, registry.log and registry.pid. The registry
# listens on 127.0.0.1:PORT over plain HTTP; the Docker Engine trusts
# 127.0.0.0/8 registries without TLS, so `docker login/push/pull
# 127.0.0.1:PORT/...` (and localhost:PORT/...) just work.
#
# On success prints, one per line (shell-sourceable):
#   REGISTRY_ADDR=127.0.0.1:PORT
#   REGISTRY_PID=PID
#   REGISTRY_DIR=DIR
# Stop it with: e2e/registry/stop.sh DIR
#
# Defaults: a free port chosen at random, user "berth", password "berth-pw",
# ttl 1800 s (the registry exits by itself after that, so a test killed with
# SIGKILL leaves nothing running for long).
# Missing tools (docker-registry, htpasswd) are installed with apt-get when
# running as root.
set -euo pipefail

PORT=""
USER_NAME=berth
PASSWORD=berth-pw
DIR=""
TTL=1800

log() { printf '[registry] %s\n' "$*" >&2; }
die() { printf '[registry] ERROR: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --port) PORT=$2; shift 2 ;;
    --user) USER_NAME=$2; shift 2 ;;
    --password) PASSWORD=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --ttl) TTL=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

# ensure_pkgs CMD:PKG ... -- install PKG with apt-get when CMD is missing.
ensure_pkgs() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
  [[ $(id -u) == 0 ]] || die "missing packages ${missing[*]}; run as root or install them"
  log "apt-get install -y ${missing[*]}"
  # Several tests may start registries at once: serialise apt.
  (
    flock 9
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ) 9>/tmp/berth-registry-apt.lock
}
ensure_pkgs docker-registry:docker-registry htpasswd:apache2-utils

# True when something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [[ -z $PORT ]]; then
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if ! listening "$candidate"; then PORT=$candidate; break; fi
  done
  [[ -n $PORT ]] || die "no free port found"
elif listening "$PORT"; then
  die "127.0.0.1:$PORT is already in use"
fi

if [[ -z $DIR ]]; then
  DIR=$(mktemp -d /tmp/berth-registry.XXXXXX)
else
  mkdir -p "$DIR"
fi
mkdir -p "$DIR/data"
htpasswd -Bbn "$USER_NAME" "$PASSWORD" >"$DIR/htpasswd"
cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
auth:
  htpasswd:
    realm: berth-test-registry
    path: $DIR/htpasswd
EOF

# Detached from the caller (own session, no inherited descriptors), so that
# the caller may wait for this script's output without waiting for the
# registry; bounded by the ttl.
setsid timeout "$TTL" docker-registry serve "$DIR/config.yml" \
  </dev/null >"$DIR/registry.log" 2>&1 &
PID=$!
echo "$PID" >"$DIR/registry.pid"

for _ in $(seq 1 100); do
  listening "$PORT" && break
  kill -0 "$PID" 2>/dev/null || { cat "$DIR/registry.log" >&2; die "registry exited at start"; }
  sleep 0.1
done
listening "$PORT" || { kill "$PID" 2>/dev/null || true; cat "$DIR/registry.log" >&2; die "registry did not listen on 127.0.0.1:$PORT"; }

log "registry on 127.0.0.1:$PORT (pid $PID, dir $DIR, user $USER_NAME)"
echo "REGISTRY_ADDR=127.0.0.1:$PORT"
echo "REGISTRY_PID=$PID"
echo "REGISTRY_DIR=$DIR"
