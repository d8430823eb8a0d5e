#!/usr/bin/env bash
# Build a tiny local Redis image from the host's Debian redis-server binary.
#
# No container registry is reachable on our CI/dev machines, so `redis:7` cannot
# be pulled. Instead we package /usr/bin/redis-server (Debian's 7.0.x) together
# with every shared library `ldd` reports and the dynamic loader into a
# `FROM scratch` image. It behaves like the public `redis` image for our tests:
# listens on 0.0.0.0:6379, logs "Ready to accept connections" to stdout,
# persistence off by default (extra args such as `--appendonly yes` can be
# appended by the caller; the working directory is /data).
#
# Usage: docker/build-redis-image.sh [IMAGE]
#   IMAGE        image tag (default: $REDIS_TEST_IMAGE or sandbox-coordinator/redis-test:7.0)
#   FORCE=1      rebuild even if the image already exists
#   REDIS_SERVER path of the redis-server binary (default: /usr/bin/redis-server)
# Prints the image name on its last line of stdout.
set -euo pipefail

IMAGE="${1:-${REDIS_TEST_IMAGE:-sandbox-coordinator/redis-test:7.0}}"
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/redis-server}"
FORCE="${FORCE:-0}"

log() { echo "[build-redis-image] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "docker engine not reachable (docker info failed)"

if [[ "$FORCE" != "1" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already exists (set FORCE=1 to rebuild)"
    echo "$IMAGE"
    exit 0
fi

[[ -e "$REDIS_SERVER" ]] || die "$REDIS_SERVER not found (apt-get install redis-server)"
command -v ldd >/dev/null 2>&1 || die "ldd not found"
# Debian ships /usr/bin/redis-server as a symlink to redis-check-rdb; redis picks
# its personality from argv[0], so the copy must be a regular file named redis-server.
BIN="$(readlink -f "$REDIS_SERVER")"

CTX="$(mktemp -d "${TMPDIR:-/tmp}/redis-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/rootfs/usr/bin" "$CTX/rootfs/data" "$CTX/rootfs/tmp" "$CTX/rootfs/etc"
chmod 1777 "$CTX/rootfs/tmp"
cp "$BIN" "$CTX/rootfs/usr/bin/redis-server"

# Copy a file to the same path inside the rootfs. The content comes from the
# fully resolved file; the requested path itself and (if different) the path
# of the resolved file both exist in the image.
copy_lib() {
    local path="$1" real
    real="$(readlink -f "$path")"
    [[ -f "$real" ]] || die "library $path (-> $real) not found"
    for dest in "$path" "$real"; do
        if [[ ! -e "$CTX/rootfs$dest" ]]; then
            mkdir -p "$CTX/rootfs$(dirname "$dest")"
            cp "$real" "$CTX/rootfs$dest"
        fi
    done
}

LDD_OUT="$(ldd "$BIN")" || die "ldd $BIN failed (statically linked?)"
nlibs=0
while read -r line; do
    case "$line" in
        *"=> not found"*) die "missing library: $line" ;;
        *"=>"*) lib="$(awk '{print $3}' <<<"$line")" ;;      # libfoo.so => /path (0x..)
        /*) lib="$(awk '{print $1}' <<<"$line")" ;;          # /lib64/ld-linux-x86-64.so.2 (0x..)
        *) continue ;;                                        # linux-vdso.so.1 (0x..)
    esac
    [[ "$lib" == /* ]] || continue
    copy_lib "$lib"
    nlibs=$((nlibs + 1))
done <<<"$LDD_OUT"
log "packaged $BIN with $nlibs shared objects"

# Be sure the dynamic loader named in the ELF interpreter field is there even
# if ldd printed it under another path (e.g. /lib64 is a symlink on Debian).
interp="$(grep -a -o -m1 '/lib[^[:space:]]*/ld-linux[^[:space:]]*\.so\.[0-9]' "$BIN" | head -n1 || true)"
if [[ -n "$interp" && -e "$interp" ]]; then copy_lib "$interp"; fi

printf 'root:x:0:0:root:/data:/usr/bin/redis-server\nredis:x:999:999:redis:/data:/usr/bin/redis-server\n' >"$CTX/rootfs/etc/passwd"
printf 'root:x:0:\nredis:x:999:\n' >"$CTX/rootfs/etc/group"

version="$("$BIN" --version 2>/dev/null | head -n1 || true)"
cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="sandbox-coordinator redis test image" \\
      org.opencontainers.image.description="${version//\"/} packaged from the host by docker/build-redis-image.sh"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
EXPOSE 6379
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/redis-server"]
CMD ["--protected-mode", "no", "--bind", "0.0.0.0", "--port", "6379", "--save", "", "--appendonly", "no"]
DOCKERFILE

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
log "building $IMAGE from $CTX"
# The legacy builder needs neither BuildKit nor buildx and works offline for FROM scratch.
if ! build_out="$(DOCKER_BUILDKIT=0 docker build -t "$IMAGE" "$CTX" 2>&1)"; then
    echo "$build_out" >&2
    die "docker build failed"
fi

new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true   # the previous build, now untagged
fi

# Smoke test: the image must start and log that it accepts connections.
# (labelled like the test containers so `make test-clean` finds a leftover)
cid="$(docker run -d --label sandbox-coordinator.test-redis=1 "$IMAGE")"
ok=0
for _ in $(seq 1 100); do
    if docker logs "$cid" 2>&1 | grep -q 'Ready to accept connections'; then ok=1; break; fi
    sleep 0.1
done
logs="$(docker logs "$cid" 2>&1 || true)"
docker rm -f "$cid" >/dev/null 2>&1 || true
if [[ "$ok" != 1 ]]; then
    log "container logs:"; echo "$logs" >&2
    die "image $IMAGE did not become ready"
fi
log "image $IMAGE is ready"
echo "$IMAGE"
