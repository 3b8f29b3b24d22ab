# syntax=docker/dockerfile:1.7
# The edge's image, built from the repository root:
#   docker build -f infra/docker/edge.Dockerfile -t max-tps-ecs/edge .
# infra/01_ecr_build_push.sh builds it and pushes it to ECR.
#
# io_uring on Fargate: Docker's and containerd's default seccomp profiles block the
# io_uring syscalls, and Fargate takes no custom profile. The edge runs under that
# default profile; with EDGE_DRIVER=auto (the default) it finds io_uring refused at
# start, runs every core on the epoll driver and says so in its start-up log. On ECS
# Fargate the epoll path is the production path: benchmark it (perf/ measures both).

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
    cargo build --release --locked -p edge --bin edge \
 && install -D -m 0755 target/release/edge /out/edge

# Same Debian release as the build stage, so the glibc the binary links matches.
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 edge \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin edge
COPY --from=build /out/edge /usr/local/bin/edge
COPY infra/docker/edge-health.sh /usr/local/bin/edge-health
# The task definition (infra/04_task_defs.sh) sets the rest of the environment.
ENV EDGE_ADDR=0.0.0.0:8080 \
    EDGE_DRIVER=auto \
    EDGE_LOG=info
USER 10001:10001
EXPOSE 8080
# The edge drains on SIGTERM (health 503, listeners closed, in-flight requests
# finished) within EDGE_SHUTDOWN_GRACE_MS; ECS's stopTimeout is set above that.
STOPSIGNAL SIGTERM
# ECS uses the task definition's healthCheck (the same command); this one is for
# plain `docker run`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/edge-health", "/public/health"]
ENTRYPOINT ["/usr/local/bin/edge"]
