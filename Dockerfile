# Container image of linkwatch_exporter, in the layout of the Prometheus
# exporters: Prometheus' Makefile.common builds it from here with
# --build-arg ARCH=... --build-arg OS=..., after `promu crossbuild` has put
# the binaries in .build/${OS}-${ARCH}/.
#
# It watches the links of the network namespace it runs in: give it the
# host's network (docker run --net=host, Kubernetes hostNetwork: true) to
# watch the host; that needs no privilege. Route failover (--config.file)
# needs CAP_NET_ADMIN, which container runtimes give only to root (they set
# no ambient capabilities): run it as root with that one capability, e.g.
#   docker run --net=host --user 0 --cap-drop ALL --cap-add NET_ADMIN ...
# (see deploy/kubernetes/daemonset-failover.yaml).
ARG ARCH="amd64"
ARG OS="linux"
FROM quay.io/prometheus/busybox-${OS}-${ARCH}:latest
LABEL maintainer="The linkwatch_exporter Authors" \
      org.opencontainers.image.source="https://github.com/linkwatch/linkwatch_exporter" \
      org.opencontainers.image.licenses="Apache-2.0"

ARG ARCH="amd64"
ARG OS="linux"
COPY .build/${OS}-${ARCH}/linkwatch_exporter /bin/linkwatch_exporter
COPY LICENSE                                /LICENSE

EXPOSE     9957
USER       nobody
ENTRYPOINT ["/bin/linkwatch_exporter"]
