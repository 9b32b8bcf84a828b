// Package routes implements the optional route failover of linkwatch_exporter:
// a strict YAML policy file names, per watched link, the backup routes to
// install while the link is down. Failover is triggered by the link's own
// events, by an Alertmanager webhook, or both; failback needs local
// confirmation that the link is healthy again, plus hold-down and flap
// dampening.
//
// Only routes that carry the configured rtm_protocol are ever created,
// replaced or deleted.
//
// The package is not a stable Go API; the policy file format, the webhook
// contract and the metrics are.
package routes
