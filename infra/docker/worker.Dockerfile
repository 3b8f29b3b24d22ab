# The worker's image. infra/docker/build.sh builds it (`make images`, and
# infra/01_ecr_build_push.sh for ECR) with buildah, from a context it stages: the
# release binary `worker` and `worker-health` (this folder's worker-health.sh), on the
# base image of base.Dockerfile. The default command is `worker run`;
# infra/08_db_init.sh runs the same image with `migrate` as a one-off task. The
# migrations are compiled into the binary (worker/src/migrate.rs).
ARG BASE=localhost/max-tps-ecs/base:local
FROM ${BASE}
COPY worker /usr/local/bin/worker
COPY worker-health /usr/local/bin/worker-health
ENV WORKER_LOG=info
USER 10001:10001
# SIGTERM: stop receiving, finish, project and ack the batch in hand, exit 0.
STOPSIGNAL SIGTERM
# The worker serves no HTTP; this is a liveness check (the process is there). A worker
# that exits is replaced by ECS either way.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/worker-health"]
ENTRYPOINT ["/usr/local/bin/worker"]
CMD ["run"]
