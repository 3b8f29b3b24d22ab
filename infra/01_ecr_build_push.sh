#!/usr/bin/env bash
# 01: ECR repositories $PROJECT/edge and $PROJECT/worker (scan on push, immutable tags,
# a lifecycle policy keeping the last 30 images), then the images: built by
# infra/docker/build.sh (the recipe of `make images`: release binaries built here, a
# base assembled FROM scratch, buildah, no Docker engine) and pushed with buildah. Where
# buildah is missing and cannot be installed (not root, no apt-get), the step says what
# to run elsewhere and skips. Writes infra/out/<region>/images.json (the image URIs 04
# puts in the task definitions).
#
# Environment: IMAGE_TAG (default: the commit, git-<sha12>, with -dirty for a tree
# with changes), PLATFORM (linux/amd64; linux/arm64 for Graviton, with CPU_ARCH=ARM64
# in step 04: the binaries are not cross-built, so run this step on a machine of that
# architecture).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PLATFORM="${PLATFORM:-linux/amd64}"
if [[ -z "${IMAGE_TAG:-}" ]]; then
	IMAGE_TAG="git-$(git -C "$ROOT_DIR" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
	if [[ -n "$(git -C "$ROOT_DIR" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
		IMAGE_TAG="$IMAGE_TAG-dirty"
	fi
fi

lifecycle='{"rules":[{"rulePriority":1,"description":"keep the last 30 images","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":30},"action":{"type":"expire"}}]}'

repos_json="$(awscli ecr describe-repositories)"
declare -A URI
for svc in edge worker; do
	name="$(repo_name "$svc")"
	uri="$(jq -r --arg n "$name" '.repositories[] | select(.repositoryName == $n) | .repositoryUri' <<<"$repos_json")"
	if [[ -z "$uri" ]]; then
		uri="$(awscli ecr create-repository --repository-name "$name" \
			--image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE \
			--encryption-configuration encryptionType=AES256 --tags "$(tags_kv "$name")" |
			jq -r .repository.repositoryUri)"
		created "ecr repository $name $uri"
		awscli ecr put-lifecycle-policy --repository-name "$name" --lifecycle-policy-text "$lifecycle" >/dev/null
		setting "lifecycle policy on $name (keep 30 images)"
	else
		exists "ecr repository $name $uri"
	fi
	URI[$svc]="$uri"
done

state_set images tag "$IMAGE_TAG"
state_set images edge "${URI[edge]}:$IMAGE_TAG"
state_set images worker "${URI[worker]}:$IMAGE_TAG"
env_set EDGE_IMAGE "${URI[edge]}:$IMAGE_TAG"
env_set WORKER_IMAGE "${URI[worker]}:$IMAGE_TAG"

# --- images
if is_local_endpoint; then
	skip_local "image build and push (a local endpoint has no registry to push to); task definitions will name ${URI[edge]}:$IMAGE_TAG"
	exit 0
fi
if ! command -v buildah >/dev/null 2>&1 && { ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; }; then
	log "SKIPPED  image build and push: no buildah here (and not root with apt-get to install it)."
	log "         Build and push on a $PLATFORM machine with buildah, then re-run this step with the same IMAGE_TAG:"
	log "           EDGE_IMAGE=${URI[edge]}:$IMAGE_TAG WORKER_IMAGE=${URI[worker]}:$IMAGE_TAG infra/docker/build.sh"
	log "           buildah push ${URI[edge]}:$IMAGE_TAG; buildah push ${URI[worker]}:$IMAGE_TAG"
	log "         Until those tags exist, the services of step 05 cannot start tasks."
	exit 0
fi

missing=()
for svc in edge worker; do
	name="$(repo_name "$svc")"
	if aws_try ecr describe-images --repository-name "$name" --image-ids "imageTag=$IMAGE_TAG" >/dev/null; then
		exists "image ${URI[$svc]}:$IMAGE_TAG (tags are immutable: commit, or set IMAGE_TAG, to push a new build)"
		continue
	fi
	aws_not_found || die "describe-images $name: $(aws_error)"
	missing+=("$svc")
done
if ((${#missing[@]} == 0)); then
	log "done: images tagged $IMAGE_TAG -> $(state_path images)"
	exit 0
fi
log "building ${missing[*]} ($PLATFORM) with infra/docker/build.sh"
export IMAGE_TAG PLATFORM
EDGE_IMAGE="${URI[edge]}:$IMAGE_TAG" WORKER_IMAGE="${URI[worker]}:$IMAGE_TAG" \
	"$INFRA_DIR/docker/build.sh" "${missing[@]}"
registry="${URI[edge]%%/*}"
awscli ecr get-login-password | buildah login --username AWS --password-stdin "$registry" >/dev/null
for svc in "${missing[@]}"; do
	buildah push --quiet "${URI[$svc]}:$IMAGE_TAG"
	created "image ${URI[$svc]}:$IMAGE_TAG"
done
log "done: images tagged $IMAGE_TAG -> $(state_path images)"
