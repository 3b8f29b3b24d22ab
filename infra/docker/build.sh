#!/usr/bin/env bash
# Build the edge and worker images with buildah: `make images`, and
# infra/01_ecr_build_push.sh with the ECR names. One recipe, no Docker engine, no
# registry to pull from.
#
#   infra/docker/build.sh [edge] [worker]        (both when none is named)
#
# 1. `cargo build --release --locked` of the two binaries (a no-op when they are fresh),
#    on this machine: the binaries link glibc dynamically (`ldd`: libc, libm, libgcc_s,
#    ld-linux), so an image needs those libraries, at least as new as the ones they
#    were linked against.
# 2. The base image, FROM scratch: the libraries `ldd` names, copied from this machine
#    (so they are the very ones the binaries were linked against, on any build host),
#    Debian's static busybox (the health checks' `sh` and `wget`, and a shell for ECS
#    Exec), the CA bundle (the AWS SDK reads the system roots), /etc/passwd with the
#    non-root user 10001, /etc/nsswitch.conf and /tmp. No base image is pulled.
# 3. edge.Dockerfile and worker.Dockerfile on top: the binary without its debug
#    sections (symbols kept, so perf still names functions), the health check, the
#    user, the entrypoint. buildah writes the Docker image format: OCI's has no
#    HEALTHCHECK.
#
# Environment: IMAGE_TAG (local), EDGE_IMAGE / WORKER_IMAGE (max-tps-ecs/edge:$IMAGE_TAG,
# max-tps-ecs/worker:$IMAGE_TAG), BASE_IMAGE (max-tps-ecs/base:$IMAGE_TAG), PLATFORM
# (when set, it must be this machine's: the binaries are built here, not cross-built),
# CARGO, CARGO_TARGET_DIR. Missing tools (buildah, binutils, ca-certificates) are
# installed with apt-get when root; busybox-static is taken from its package with
# `apt-get download`. Prints each image's size.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
DOCKER_DIR="$ROOT/infra/docker"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO="${CARGO:-cargo}"
IMAGE_TAG="${IMAGE_TAG:-local}"
# Named in full: FROM of a short name may look in registries, this one is only local.
BASE_IMAGE="${BASE_IMAGE:-localhost/max-tps-ecs/base:$IMAGE_TAG}"
EDGE_IMAGE="${EDGE_IMAGE:-max-tps-ecs/edge:$IMAGE_TAG}"
WORKER_IMAGE="${WORKER_IMAGE:-max-tps-ecs/worker:$IMAGE_TAG}"
# The user both services run as (the Dockerfiles' USER).
APP_UID=10001

log() { printf 'images: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

services=("$@")
if ((${#services[@]} == 0)); then
	services=(edge worker)
fi
for svc in "${services[@]}"; do
	[[ "$svc" == edge || "$svc" == worker ]] || die "unknown image '$svc' (edge or worker)"
done

# --- tools
apt_install() {
	if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
		die "install these first (Debian/Ubuntu package names): $*"
	fi
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; } ||
		die "apt-get install $* failed"
}
pkgs=()
# runc with it, or apt takes buildah's recommended crun, which fails on a cgroup v1/v2
# hybrid (as on these machines) when podman runs the images.
command -v buildah >/dev/null 2>&1 || pkgs+=(buildah runc)
command -v objcopy >/dev/null 2>&1 || pkgs+=(binutils)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
if ((${#pkgs[@]} > 0)); then
	apt_install "${pkgs[@]}"
fi

case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
*) die "unsupported machine $(uname -m)" ;;
esac
if [[ -n "${PLATFORM:-}" && "$PLATFORM" != "linux/$arch" ]]; then
	die "PLATFORM=$PLATFORM, but this machine builds linux/$arch binaries: build on a linux/${PLATFORM#linux/} machine"
fi

# --- 1. binaries
cargo_args=()
for svc in "${services[@]}"; do
	cargo_args+=(-p "$svc" --bin "$svc")
done
log "cargo build --release --locked ${cargo_args[*]}"
(cd "$ROOT" && "$CARGO" build --release --locked "${cargo_args[@]}")

stage="$(mktemp -d "${TMPDIR:-/tmp}/max-tps-ecs-images.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
# Copied at once (a shared CARGO_TARGET_DIR may get another tree's build next), without
# the debug sections: symbols stay, so perf still names functions.
for svc in "${services[@]}"; do
	mkdir -p "$stage/$svc"
	objcopy --strip-debug "$TARGET/release/$svc" "$stage/$svc/$svc"
done

# --- 2. the base image
rootfs="$stage/base/rootfs"
mkdir -p "$rootfs"/{bin,etc/ssl/certs,tmp,usr/local/bin}
chmod 1777 "$rootfs/tmp"
# Debian's busybox-static, taken from its package (installing it would replace the
# machine's dynamic busybox), unless the machine's busybox is the static one.
busybox=/bin/busybox
if ! [[ -x "$busybox" ]] || ldd "$busybox" >/dev/null 2>&1; then
	(cd "$stage" && { apt-get download busybox-static >/dev/null 2>&1 ||
		{ ((EUID == 0)) && apt-get update -q >/dev/null && apt-get download busybox-static >/dev/null; }; }) ||
		die "apt-get download busybox-static failed"
	dpkg-deb -x "$stage"/busybox-static_*.deb "$stage/busybox-static"
	busybox="$stage/busybox-static/bin/busybox"
fi
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
	[[ -e "$rootfs/bin/$applet" ]] || ln -s busybox "$rootfs/bin/$applet"
done
# Every shared object the binaries load, under the path the loader looks for it (the
# interpreter as named in the ELF header, the rest as resolved).
for svc in "${services[@]}"; do
	while read -r lib; do
		[[ -e "$rootfs$lib" ]] && continue
		mkdir -p "$rootfs$(dirname "$lib")"
		cp -L "$lib" "$rootfs$lib"
	done < <(ldd "$stage/$svc/$svc" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
app:x:$APP_UID:$APP_UID:max-tps-ecs:/nonexistent:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
app:x:$APP_UID:
nogroup:x:65534:
EOF
# The container's /etc/hosts first (localhost, ECS's own names), then DNS.
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
bud() { # FILE IMAGE CONTEXT [ARGS...]
	local file=$1 image=$2 context=$3
	shift 3
	buildah build --quiet --pull=never --format docker --platform "linux/$arch" \
		--label "org.opencontainers.image.revision=$revision" \
		--label "org.opencontainers.image.title=${image%:*}" \
		-f "$file" -t "$image" "$@" "$context" >/dev/null
}
log "building $BASE_IMAGE (FROM scratch: busybox, $(find "$rootfs" -name '*.so*' | wc -l) shared objects, CA bundle)"
bud "$DOCKER_DIR/base.Dockerfile" "$BASE_IMAGE" "$stage/base"

# --- 3. the service images
built=("$BASE_IMAGE")
for svc in "${services[@]}"; do
	image="$EDGE_IMAGE"
	[[ "$svc" == worker ]] && image="$WORKER_IMAGE"
	cp "$DOCKER_DIR/$svc-health.sh" "$stage/$svc/$svc-health"
	chmod 0755 "$stage/$svc/$svc" "$stage/$svc/$svc-health"
	log "building $image"
	bud "$DOCKER_DIR/$svc.Dockerfile" "$image" "$stage/$svc" --build-arg "BASE=$BASE_IMAGE"
	built+=("$image")
done

for image in "${built[@]}"; do
	printf '%-48s %s\n' "$image" "$(buildah images --format '{{.Size}}' "$image")"
done
