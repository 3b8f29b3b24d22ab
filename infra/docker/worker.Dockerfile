# syntax=docker/dockerfile:1.7
# The worker's image, built from the repository root:
#   docker build -f infra/docker/worker.Dockerfile -t max-tps-ecs/worker .
# infra/01_ecr_build_push.sh builds it and pushes it to ECR. The default command is
# `worker run`; infra/08_db_init.sh runs the same image with `migrate` as a one-off task.
# The migrations are compiled into the binary (worker/src/migrate.rs).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys (rustls' crypto in the AWS SDK) builds with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p worker --bin worker \
 && install -D -m 0755 target/release/worker /out/worker

# Same Debian release as the build stage, so the glibc the binary links matches.
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 worker \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin worker
COPY --from=build /out/worker /usr/local/bin/worker
COPY infra/docker/worker-health.sh /usr/local/bin/worker-health
ENV WORKER_LOG=info
USER 10001:10001
# SIGTERM: stop receiving, finish, project and ack the batch in hand, exit 0.
STOPSIGNAL SIGTERM
# The worker serves no HTTP; this is a liveness check (the process is there). A worker
# that exits is replaced by ECS either way.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/worker-health"]
ENTRYPOINT ["/usr/local/bin/worker"]
CMD ["run"]
