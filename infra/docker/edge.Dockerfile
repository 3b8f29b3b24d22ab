# The edge's image. infra/docker/build.sh builds it (`make images`, and
# infra/01_ecr_build_push.sh for ECR) with buildah, from a context it stages: the
# release binary `edge` and `edge-health` (this folder's edge-health.sh), on the base
# image of base.Dockerfile.
#
# io_uring on Fargate: Docker's and containerd's default seccomp profiles block the
# io_uring syscalls, and Fargate takes no custom profile. The edge runs under that
# default profile; with EDGE_DRIVER=auto (the default) it finds io_uring refused at
# start, runs every core on the epoll driver and says so in its start-up log
# (`infra/docker/test.sh` shows both, under podman). On ECS Fargate the epoll path is
# the production path: benchmark it (perf/ measures both).
ARG BASE=localhost/max-tps-ecs/base:local
FROM ${BASE}
COPY edge /usr/local/bin/edge
COPY edge-health /usr/local/bin/edge-health
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
# plain `podman run`/`docker run`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/edge-health", "/public/health"]
ENTRYPOINT ["/usr/local/bin/edge"]
