// Package collector exposes the watcher's link state as Prometheus metrics.
//
// The Collector reads an in-memory snapshot of the watcher on each scrape; it
// never reads sysfs or talks netlink while collecting. All metrics are in the
// linkwatch namespace and label links with device, as node_exporter's
// node_network_* metrics do, so that the two join on instance and device.
//
// The package is not a stable Go API; the metric names are the stable
// contract.
package collector
