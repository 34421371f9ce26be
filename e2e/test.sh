#!/usr/bin/env bash
# The test command: bash e2e/test.sh [cargo test args…]
#
# Checks (and, where it can, installs) every prerequisite of berth's tests, then runs
# `cargo test --workspace`. Works on a fresh Debian machine with a running Docker Engine; run it
# as root the first time (apt-get) or with the apt packages below already installed.
#
#   apt packages   busybox-static, debootstrap (+ keyring, gpgv, wget) for the test images;
#                  docker-registry, apache2-utils for the registry tests
#   pip packages   kubernetes-validate, helm-python-sdk, jsonschema, PyYAML, installed into the
#                  `python3` first on PATH (a bare venv is fine: pip is bootstrapped with
#                  ensurepip), used by crates/berth/tests/crds.rs through e2e/k8s/validate.py
#   test images    berth-test/busybox:{latest,v2}, berth-test/services:bookworm
#                  (e2e/images/build.sh all; nothing is pulled from a registry)
#
# Arguments are passed to cargo test, e.g. `bash e2e/test.sh -p berth` or
# `bash e2e/test.sh -p berth-e2e --test e2e -- rollout::`. SKIP_PREREQS=1 skips the checks.
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(busybox-static debootstrap debian-archive-keyring gpgv wget docker-registry apache2-utils)
PIP_PACKAGES=(kubernetes-validate helm-python-sdk jsonschema PyYAML)
PY_IMPORTS='import kubernetes_validate, helm_python, jsonschema, yaml'

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { printf '[test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

# rustup's cargo may not be on a non-login PATH
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs)"

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing Debian packages $* and no apt-get to install them"
  [[ $(id -u) == 0 ]] || die "missing Debian packages $*; run this script as root once, or: sudo apt-get install $*"
  if ((APT_UPDATED == 0)); then
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

check_docker() {
  if ! docker info >/dev/null 2>&1; then
    die "the Docker Engine is not reachable ('docker info' fails); berth's end-to-end tests need a running dockerd (DOCKER_HOST is honoured)"
  fi
}

check_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  fi
  log "apt packages present: ${APT_PACKAGES[*]}"
}

check_pip() {
  local py
  py=$(command -v python3) || die "python3 not found on PATH; install python3 (apt-get install python3)"
  if ! python3 -c "$PY_IMPORTS" >/dev/null 2>&1; then
    # A venv always has ensurepip; Debian's system python3 may need python3-pip.
    if ! python3 -m pip --version >/dev/null 2>&1; then
      python3 -m ensurepip --upgrade >/dev/null 2>&1 || apt_install python3-pip
    fi
    log "pip install ${PIP_PACKAGES[*]} into $py"
    local args=(--quiet --disable-pip-version-check "${PIP_PACKAGES[@]}")
    # Debian's own python3 is "externally managed" (PEP 668): fall back to
    # --break-system-packages there (as root only; a venv never needs it).
    python3 -m pip install "${args[@]}" 2>/dev/null ||
      python3 -m pip install --root-user-action=ignore --break-system-packages "${args[@]}" ||
      die "pip install ${PIP_PACKAGES[*]} failed for $py"
    python3 -c "$PY_IMPORTS" || die "$py still cannot import the validators after pip install"
  fi
  python3 -c 'import kubernetes_validate, helm_python; print("[test.sh] python3 packages present: kubernetes-validate", kubernetes_validate.__version__, "/ helm", helm_python.helm_sdk_version())' >&2
}

if [[ ${SKIP_PREREQS:-0} != 1 ]]; then
  check_docker
  check_apt
  check_pip
  log "test images (e2e/images/build.sh all)"
  bash e2e/images/build.sh all
fi

# `-p CRATE` narrows the run; without it every workspace crate is tested.
scope=(--workspace)
for a in "$@"; do
  [[ $a == -- ]] && break
  [[ $a == -p || $a == -p* || $a == --package* ]] && scope=()
done
log "cargo test ${scope[*]} $*"
exec cargo test "${scope[@]}" "$@"
