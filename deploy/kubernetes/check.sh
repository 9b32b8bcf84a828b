#!/usr/bin/env bash
# Checks the Kubernetes manifests in this directory: strict decoding into the
# typed API structs, the security settings, the container arguments and the
# failover policy against the exporter binary, and that prometheusrule.yaml
# carries the groups of deploy/prometheus/*.yml. The checks are Go tests in
# the separate module check/ (so the exporter's go.mod has no Kubernetes
# dependencies); see check/doc.go.
#
# After changing deploy/prometheus/alerts.yml or rules.yml, regenerate
# prometheusrule.yaml with:
#   cd deploy/kubernetes/check && go test -run TestPrometheusRule -update
set -euo pipefail

cd "$(dirname "$0")/check"
go vet ./...
go test -count=1 ./...
