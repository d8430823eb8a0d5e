#!/usr/bin/env bash
# Build a tiny local Redis (or Valkey) image from the host's Debian server binary.
#
# No container registry is reachable on our CI/dev machines, so `redis:7` or
# `valkey/valkey:8` cannot be pulled. Instead we package the host's
# /usr/bin/redis-server (Debian's 7.0.x) or /usr/bin/valkey-server (Valkey 8
# from bookworm-backports) together with every shared library `ldd` reports
# and the dynamic loader into a `FROM scratch` image. It behaves like the
# public images for our tests: listens on 0.0.0.0:6379, logs "Ready to accept
# connections" to stdout, persistence off by default (extra args such as
# `--appendonly yes` can be appended by the caller; the working directory is
# /data). The server is /usr/bin/redis-server or /usr/bin/valkey-server, the
# entrypoint the test harness uses for that server (tests/support/server.rs).
#
# Usage: docker/build-redis-image.sh [IMAGE]
#   REDIS_TEST_SERVER  redis (default) or valkey: which server to package
#   IMAGE              image tag (default: $REDIS_TEST_IMAGE, else
#                      sandbox-coordinator/redis-test:7.0 or
#                      sandbox-coordinator/valkey-test:8.0)
#   FORCE=1            rebuild even if the image already exists
#   REDIS_SERVER       path of the server binary (default: /usr/bin/<server>-server)
# Prints the image name on its last line of stdout.
#
#   docker/build-redis-image.sh                                   # Redis 7
#   REDIS_TEST_SERVER=valkey docker/build-redis-image.sh          # Valkey 8
set -euo pipefail

SERVER="${REDIS_TEST_SERVER:-redis}"
case "$SERVER" in
    redis) DEFAULT_IMAGE=sandbox-coordinator/redis-test:7.0 ;;
    valkey) DEFAULT_IMAGE=sandbox-coordinator/valkey-test:8.0 ;;
    *) echo "[build-redis-image] error: REDIS_TEST_SERVER=$SERVER (expected redis or valkey)" >&2; exit 1 ;;
esac
NAME="$SERVER-server"
IMAGE="${1:-${REDIS_TEST_IMAGE:-$DEFAULT_IMAGE}}"
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/$NAME}"
FORCE="${FORCE:-0}"
# A Valkey image tagged like a Redis one (or the reverse) would run the wrong
# server under the right name.
case "$SERVER:$IMAGE" in
    redis:*valkey*| valkey:*redis-test*)
        echo "[build-redis-image] error: image $IMAGE does not name a $SERVER image (set REDIS_TEST_SERVER)" >&2
        exit 1
        ;;
esac

log() { echo "[build-redis-image] $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "docker engine not reachable (docker info failed)"

if [[ "$FORCE" != "1" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already exists (set FORCE=1 to rebuild)"
    echo "$IMAGE"
    exit 0
fi

if [[ ! -e "$REDIS_SERVER" ]]; then
    case "$SERVER" in
        redis) die "$REDIS_SERVER not found (apt-get install redis-server)" ;;
        valkey) die "$REDIS_SERVER not found (apt-get install -t bookworm-backports valkey-server)" ;;
    esac
fi
command -v ldd >/dev/null 2>&1 || die "ldd not found"
# Debian ships /usr/bin/redis-server as a symlink to redis-check-rdb (and
# /usr/bin/valkey-server to valkey-check-rdb); the server picks its personality
# from argv[0], so the copy must be a regular file named <server>-server.
BIN="$(readlink -f "$REDIS_SERVER")"

CTX="$(mktemp -d "${TMPDIR:-/tmp}/redis-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/rootfs/usr/bin" "$CTX/rootfs/data" "$CTX/rootfs/tmp" "$CTX/rootfs/etc"
chmod 1777 "$CTX/rootfs/tmp"
cp "$BIN" "$CTX/rootfs/usr/bin/$NAME"

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

printf 'root:x:0:0:root:/data:/usr/bin/%s\n%s:x:999:999:%s:/data:/usr/bin/%s\n' "$NAME" "$SERVER" "$SERVER" "$NAME" >"$CTX/rootfs/etc/passwd"
printf 'root:x:0:\n%s:x:999:\n' "$SERVER" >"$CTX/rootfs/etc/group"

# Asked through the original path: the resolved file's own name (…-check-rdb)
# would answer as the RDB checker.
version="$("$REDIS_SERVER" --version 2>/dev/null | head -n1 || true)"
cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="sandbox-coordinator $SERVER test image" \\
      org.opencontainers.image.description="${version//\"/} packaged from the host by docker/build-redis-image.sh"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
EXPOSE 6379
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/$NAME"]
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
