package routes

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	failoverActiveDesc = prometheus.NewDesc("linkwatch_failover_active",
		"Whether the policy's link is failed over (1): its backup routes are installed, or would be in dry-run mode.",
		[]string{"policy"}, nil)
	failoverTransitionsDesc = prometheus.NewDesc("linkwatch_failover_transitions_total",
		"Failovers and failbacks of the policy, by what triggered them (link, alert, restart, reload).",
		[]string{"policy", "action", "trigger"}, nil)
	failoverErrorsDesc = prometheus.NewDesc("linkwatch_failover_errors_total",
		"Failures to list, install or remove the policy's routes.", []string{"policy"}, nil)
	failoverLastDesc = prometheus.NewDesc("linkwatch_failover_last_transition_timestamp_seconds",
		"Unix time of the policy's last failover or failback.", []string{"policy"}, nil)
	failoverRepairsDesc = prometheus.NewDesc("linkwatch_failover_route_repairs_total",
		"Routes of an active failover that were found missing or changed and were reinstalled.",
		[]string{"policy"}, nil)
	flapPenaltyDesc = prometheus.NewDesc("linkwatch_link_flap_penalty",
		"Current flap dampening penalty of the link (RFC 2439 style; halves every half-life).",
		[]string{"device"}, nil)
	suppressedDesc = prometheus.NewDesc("linkwatch_link_suppressed",
		"Whether failback to the link is suppressed by flap dampening (1) or not (0).",
		[]string{"device"}, nil)
)

// The transitions every policy exports from the start, at zero.
var initialTransitions = []transitionKey{
	{"failover", string(TriggerLink)}, {"failover", string(TriggerAlert)}, {"failback", string(TriggerLink)},
}

// Describe implements prometheus.Collector.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		failoverActiveDesc, failoverTransitionsDesc, failoverErrorsDesc, failoverLastDesc,
		failoverRepairsDesc, flapPenaltyDesc, suppressedDesc,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Engine) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	for _, ps := range e.policies {
		name := ps.p.Name
		ch <- prometheus.MustNewConstMetric(failoverActiveDesc, prometheus.GaugeValue, b2f(ps.active), name)
		for _, k := range initialTransitions {
			if _, ok := ps.transitions[k]; !ok {
				ch <- prometheus.MustNewConstMetric(failoverTransitionsDesc, prometheus.CounterValue, 0, name, k.action, k.trigger)
			}
		}
		for k, n := range ps.transitions {
			ch <- prometheus.MustNewConstMetric(failoverTransitionsDesc, prometheus.CounterValue, float64(n), name, k.action, k.trigger)
		}
		ch <- prometheus.MustNewConstMetric(failoverErrorsDesc, prometheus.CounterValue, float64(ps.errors), name)
		ch <- prometheus.MustNewConstMetric(failoverRepairsDesc, prometheus.CounterValue, float64(ps.repairs), name)
		if !ps.lastTransition.IsZero() {
			ch <- prometheus.MustNewConstMetric(failoverLastDesc, prometheus.GaugeValue,
				float64(ps.lastTransition.UnixNano())/1e9, name)
		}
	}
	seen := make(map[string]bool)
	for _, ps := range e.policies {
		dev := ps.p.Device
		c := e.dampingFor(dev)
		if c == nil || seen[dev] {
			continue
		}
		seen[dev] = true
		d := e.damper(dev)
		ch <- prometheus.MustNewConstMetric(flapPenaltyDesc, prometheus.GaugeValue, d.value(*c, now), dev)
		ch <- prometheus.MustNewConstMetric(suppressedDesc, prometheus.GaugeValue, b2f(d.update(*c, now)), dev)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
