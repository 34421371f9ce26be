#!/usr/bin/env bash
# Build the local test images berth's end-to-end tests use. No registry is
# reachable, so every image is made here from Debian packages.
#
#   build.sh busybox   berth-test/busybox:latest and berth-test/busybox:v2
#                      (FROM scratch + Debian's busybox-static; seconds)
#   build.sh services  berth-test/services:bookworm (debootstrap minbase with
#                      postgresql-15, redis-server, nginx-light, curl, busybox;
#                      minutes cold, seconds from the tarball cache)
#   build.sh all       both
#
# Idempotent: an image that already exists is left alone (FORCE=1 rebuilds).
# Environment:
#   BERTH_IMAGE_CACHE    where the services tarball is cached
#                        (default /var/cache/berth-test)
#   BERTH_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the one apt
#                        is configured with on this machine)
#   FORCE=1              rebuild even if the images exist (ignores the cache)
set -euo pipefail

BUSYBOX_IMAGE=berth-test/busybox
SERVICES_IMAGE=berth-test/services:bookworm
SERVICES_PACKAGES=postgresql-15,redis-server,nginx-light,curl,busybox
SUITE=bookworm
# Bump when the services post-processing below changes, so that existing
# images and caches are rebuilt.
SERVICES_RECIPE_VERSION=1
CACHE_DIR=${BERTH_IMAGE_CACHE:-/var/cache/berth-test}
SERVICES_TAR=$CACHE_DIR/services-bookworm.tar
FORCE=${FORCE:-0}
# The engine may be driven by a client without buildx; the classic builder
# handles these tiny Dockerfiles fine and needs no extra plugin.
export DOCKER_BUILDKIT=0

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { printf '[build.sh] ERROR: %s\n' "$*" >&2; exit 1; }

CLEANUP_DIRS=()
cleanup() {
  local d
  for d in "${CLEANUP_DIRS[@]}"; do
    [[ -e $d ]] && remove_rootfs "$d"
  done
  rm -f "$SERVICES_TAR.tmp.$$"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
# image_current IMAGE RECIPE: the image exists and was built from RECIPE
# (a hash kept in the label dev.berth.test-recipe).
image_current() {
  [[ $(docker image inspect -f '{{index .Config.Labels "dev.berth.test-recipe"}}' "$1" 2>/dev/null) == "$2" ]]
}
hash16() { sha256sum | cut -c1-16; }

APT_UPDATED=0
# ensure_pkgs CMD:PKG ... -- install PKG with apt-get when CMD (a command or
# an absolute path) is missing.
ensure_pkgs() {
  local missing=() spec cmd pkg
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if [[ $cmd == /* ]]; then [[ -e $cmd ]] && continue
    else command -v "$cmd" >/dev/null 2>&1 && continue
    fi
    missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
  [[ $(id -u) == 0 ]] || die "missing packages ${missing[*]}; run as root or install them"
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install -y ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

check_docker() {
  docker info >/dev/null 2>&1 || die "cannot talk to the Docker Engine ('docker info' failed); start dockerd first"
}

# ---------------------------------------------------------------- busybox ---

# shellcheck disable=SC2016 # ${VERSION} is for docker build, not bash
BUSYBOX_DOCKERFILE='FROM scratch
COPY busybox /bin/busybox
COPY passwd group /etc/
SHELL ["/bin/busybox", "sh", "-c"]
RUN /bin/busybox --install -s /bin \
 && mkdir -p /tmp /root /var/run /www /usr/bin /sbin /usr/sbin \
 && chmod 1777 /tmp
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SHELL ["/bin/sh", "-c"]
ARG VERSION
LABEL dev.berth.test-image=busybox dev.berth.test-version=${VERSION}
RUN echo "${VERSION}" > /etc/berth-test-version
CMD ["sh"]
'

build_busybox() {
  ensure_pkgs /bin/busybox:busybox-static
  # The recipe: this Dockerfile and the busybox binary.
  local recipe
  recipe=$({ printf '%s' "$BUSYBOX_DOCKERFILE"; sha256sum </bin/busybox; } | hash16)
  if [[ $FORCE != 1 ]] && image_current "$BUSYBOX_IMAGE:latest" "$recipe" && image_current "$BUSYBOX_IMAGE:v2" "$recipe"; then
    log "$BUSYBOX_IMAGE:latest and :v2 are up to date, skipping (FORCE=1 rebuilds)"
    return 0
  fi
  # busybox-static ships /bin/busybox; the dynamic 'busybox' package uses the
  # same path but would not run in an image without libc.
  local bb=/bin/busybox
  if ldd "$bb" >/dev/null 2>&1; then
    die "$bb is dynamically linked; install busybox-static (apt-get install busybox-static)"
  fi

  local ctx
  ctx=$(mktemp -d /tmp/berth-busybox.XXXXXX)
  CLEANUP_DIRS+=("$ctx")
  cp "$bb" "$ctx/busybox"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ctx/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/group"
  printf '%s' "$BUSYBOX_DOCKERFILE" >"$ctx/Dockerfile"
  local v tag
  for v in v1 v2; do
    tag=$BUSYBOX_IMAGE:$v
    [[ $v == v1 ]] && tag=$BUSYBOX_IMAGE:latest
    log "docker build -t $tag (VERSION=$v) from $bb"
    # (the classic builder prints a deprecation notice; show output only on error)
    local out
    if ! out=$(docker build -q --build-arg VERSION="$v" --label dev.berth.test-recipe="$recipe" -t "$tag" "$ctx" 2>&1); then
      printf '%s\n' "$out" >&2
      die "docker build -t $tag failed"
    fi
  done
  rm -rf "$ctx"
  log "built $BUSYBOX_IMAGE:latest ($(docker image inspect -f '{{.Id}}' "$BUSYBOX_IMAGE:latest" | cut -c1-19)) and :v2 ($(docker image inspect -f '{{.Id}}' "$BUSYBOX_IMAGE:v2" | cut -c1-19))"
}

# --------------------------------------------------------------- services ---

# Print the Debian mirror apt uses for $SUITE main (deb822 .sources and
# one-line .list files), first match wins.
find_mirror() {
  if [[ -n ${BERTH_DEBIAN_MIRROR:-} ]]; then
    echo "$BERTH_DEBIAN_MIRROR"
    return 0
  fi
  local files=() f
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  local f2
  for f2 in "${files[@]}"; do
    case $f2 in
      *.sources)
        # deb822: stanzas separated by blank lines.
        awk -v suite="$SUITE" '
          function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
                (" " comps " ") ~ / main / && enabled != "no" && uri != "") { print uri; found = 1; exit }
            types = suites = comps = uri = ""; enabled = "yes"
          }
          BEGIN { enabled = "yes" }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          {
            key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^[ \t]+/, "")
            if (key == "types") types = $0
            else if (key == "uris") { split($0, u, /[ \t]+/); uri = u[1] }
            else if (key == "suites") suites = $0
            else if (key == "components") comps = $0
            else if (key == "enabled") enabled = tolower($0)
          }
          END { if (!found) flush() }' "$f2"
        ;;
      *)
        # one-line: deb [opts] URI SUITE COMPONENT...
        awk -v suite="$SUITE" '
          /^[ \t]*#/ || NF < 3 { next }
          $1 != "deb" { next }
          {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            uri = $i; s = $(i + 1); main = 0
            for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
            if (s == suite && main) { print uri; exit }
          }' "$f2"
        ;;
    esac
  done | head -1 | grep . || return 1
}

# Unmount anything debootstrap left mounted below $1, then remove it without
# crossing into another file system.
remove_rootfs() {
  local dir=$1 m
  [[ -n $dir && -d $dir ]] || return 0
  # deepest mounts first
  while IFS= read -r m; do
    log "umount $m"
    umount -l "$m" || true
  done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

build_services() {
  local recipe
  recipe=$(printf '%s|%s|%s' "$SUITE" "$SERVICES_PACKAGES" "$SERVICES_RECIPE_VERSION" | hash16)
  if [[ $FORCE != 1 ]] && image_current "$SERVICES_IMAGE" "$recipe"; then
    log "$SERVICES_IMAGE is up to date, skipping (FORCE=1 rebuilds)"
    if [[ ! -s $SERVICES_TAR ]]; then
      save_services_cache
    fi
    return 0
  fi
  if [[ $FORCE != 1 && -s $SERVICES_TAR ]]; then
    log "docker load -i $SERVICES_TAR"
    if docker load -i "$SERVICES_TAR" >/dev/null && image_current "$SERVICES_IMAGE" "$recipe"; then
      log "loaded $SERVICES_IMAGE from cache"
      return 0
    fi
    log "cache $SERVICES_TAR is unusable or outdated, removing it and building from scratch"
    rm -f "$SERVICES_TAR"
  fi

  ensure_pkgs debootstrap:debootstrap /usr/share/keyrings/debian-archive-keyring.gpg:debian-archive-keyring gpgv:gpgv wget:wget
  local mirror
  mirror=$(find_mirror) || die "no apt source for '$SUITE main' found in /etc/apt; set BERTH_DEBIAN_MIRROR"
  local root
  root=$(mktemp -d /var/tmp/berth-services-rootfs.XXXXXX)
  CLEANUP_DIRS+=("$root")
  log "debootstrap --variant=minbase --include=$SERVICES_PACKAGES $SUITE $root $mirror"
  local started=$SECONDS
  if ! debootstrap --variant=minbase --include="$SERVICES_PACKAGES" "$SUITE" "$root" "$mirror" >"$root.log" 2>&1; then
    tail -n 40 "$root.log" >&2 || true
    [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 40 "$root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (full log kept: $root.log)"
  fi
  rm -f "$root.log"
  log "debootstrap done in $((SECONDS - started))s"

  # Slim the tree: downloaded .debs, apt lists, docs. Keep copyright files.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
  find "$root/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
  # resolv.conf/hostname/hosts are provided by Docker at run time.
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
  printf 'berth test services image, %s, built %s from %s\n' "$SUITE" "$(date -u +%FT%TZ)" "$mirror" \
    >"$root/etc/berth-test-version"

  log "tar -C $root -c . | docker import - $SERVICES_IMAGE"
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL dev.berth.test-image=services' \
    --change "LABEL dev.berth.test-recipe=$recipe" \
    --change 'CMD ["bash"]' \
    - "$SERVICES_IMAGE" >/dev/null
  log "removing $root"
  remove_rootfs "$root"
  log "imported $SERVICES_IMAGE ($(docker image inspect -f '{{.Size}}' "$SERVICES_IMAGE") bytes)"
  save_services_cache
}

save_services_cache() {
  mkdir -p "$CACHE_DIR"
  log "docker save $SERVICES_IMAGE -o $SERVICES_TAR"
  docker save "$SERVICES_IMAGE" -o "$SERVICES_TAR.tmp.$$"
  mv -f "$SERVICES_TAR.tmp.$$" "$SERVICES_TAR"
}

# ------------------------------------------------------------------- main ---

usage() { echo "usage: $0 busybox|services|all" >&2; exit 2; }

[[ $# -eq 1 ]] || usage
check_docker
case $1 in
  busybox) build_busybox ;;
  services) build_services ;;
  all) build_busybox; build_services ;;
  *) usage ;;
esac
