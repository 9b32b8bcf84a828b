// Package dashboards holds the Grafana dashboard for linkwatch_exporter
// (linkwatch.json) and the code that lists its PromQL expressions, so that
// tests can check them: offline against the documented metrics and
// promtool's parser, and in end-to-end tests against a live Prometheus.
//
// See README.md in this directory for how to import the dashboard and what
// each panel shows. The package is not a stable Go API.
package dashboards
