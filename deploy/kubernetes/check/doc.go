// Package check holds the tests for the Kubernetes manifests in
// deploy/kubernetes; it has no API. Run them with deploy/kubernetes/check.sh,
// or `go test ./...` in this directory. They
//
//   - decode every document of deploy/kubernetes/*.yaml strictly into its
//     typed Go struct (Kubernetes core and apps, Prometheus Operator
//     monitoring.coreos.com/v1), so an unknown, misspelt or repeated field
//     fails;
//   - assert the security settings of both DaemonSets, that the selectors
//     match, and that the image and labels carry the version in VERSION;
//   - run the exporter binary on the container arguments and on the
//     failover policy in the ConfigMap (--config.check);
//   - compare spec.groups of prometheusrule.yaml with the groups of the
//     plain rule files (ruleFiles in rules.go).
//
// After changing the plain rule files, regenerate prometheusrule.yaml:
//
//	go test -run TestPrometheusRule -update
package check
