# The base of the edge and worker images, built by infra/docker/build.sh from a root
# filesystem it assembles (no base image is pulled: there may be no registry to pull
# from, and a binary's glibc must be the one it was linked against): the shared
# libraries the binaries load, static busybox, the CA bundle, /etc/passwd with the user
# 10001, /etc/nsswitch.conf, /tmp.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
