package routes

import (
	"net/netip"
	"regexp"
	"time"
)

// DefaultProtocol is the rtm_protocol that marks the routes this program
// owns unless the policy file says otherwise. It is outside the range the
// kernel and the well-known routing daemons use (see the README).
const DefaultProtocol = 229

// A Config is a parsed and validated policy file.
type Config struct {
	// Protocol is the rtm_protocol of our routes (global.protocol).
	Protocol uint8
	// DryRun logs and counts what would be done instead of changing routes.
	DryRun bool
	// RepairInterval is how often installed routes are checked and
	// reinstalled if something removed them.
	RepairInterval time.Duration
	Policies       []Policy
}

// Trigger says what may start a failover.
type Trigger string

// The triggers.
const (
	TriggerAlert Trigger = "alert"
	TriggerLink  Trigger = "link"
)

// A Policy names the routes to install while a watched link is down.
type Policy struct {
	Name   string
	Device string
	// Triggers holds TriggerAlert, TriggerLink or both.
	Triggers []Trigger
	// Alert selects the Alertmanager alerts that mean this policy's link is
	// down on this node.
	Alert AlertMatch
	// Routes are installed, with the global protocol, while failed over.
	Routes []Route

	// DownDelay is how long the link must stay down before a link-triggered
	// failover; UpDelay how long it must stay up before failback.
	DownDelay time.Duration
	UpDelay   time.Duration
	// MinFailoverTime is the shortest time a failover lasts.
	MinFailoverTime time.Duration
	// Dampening suppresses failback to a flapping link.
	Dampening Dampening
}

// Has reports whether the policy has trigger t.
func (p *Policy) Has(t Trigger) bool {
	for _, x := range p.Triggers {
		if x == t {
			return true
		}
	}
	return false
}

// An AlertMatch selects alerts by their labels. An alert matches when its
// alertname is one of AlertNames, every matcher of Labels and Node matches,
// and (unless DeviceLabel is empty) its DeviceLabel label equals the
// policy's device.
type AlertMatch struct {
	AlertNames []string
	// Labels are further conditions on the alert's labels.
	Labels []Matcher
	// Node are the conditions that say the alert is about this node, for
	// example an instance regular expression.
	Node []Matcher
	// DeviceLabel is the label that must equal the policy's device
	// ("device" by default; empty to disable).
	DeviceLabel string
}

// A Matcher tests one label against an anchored regular expression. A label
// that is missing has the empty value.
type Matcher struct {
	Label string
	Regex *regexp.Regexp
	// Source is the expression as written in the file.
	Source string
}

// Matches reports whether labels satisfy m.
func (m Matcher) Matches(labels map[string]string) bool {
	return m.Regex.MatchString(labels[m.Label])
}

// A Route is one route to install while failed over.
type Route struct {
	// Destination is the prefix; 0.0.0.0/0 or ::/0 for a default route.
	Destination netip.Prefix
	// Gateway is the next hop; invalid (zero) for a direct route.
	Gateway netip.Addr
	// Device is the outgoing interface name; empty to let the kernel pick
	// it from the gateway.
	Device string
	// Metric is the route priority (lower wins).
	Metric uint32
	// Table is the routing table (254, main, by default).
	Table uint32
}

// Dampening configures RFC 2439 style flap dampening: every carrier loss adds
// Penalty to the link's penalty, which halves every HalfLife. Failback is
// suppressed once the penalty exceeds Suppress, until it decays below Reuse
// or MaxSuppress has passed. A zero Penalty disables dampening.
type Dampening struct {
	Penalty     float64
	HalfLife    time.Duration
	Suppress    float64
	Reuse       float64
	MaxSuppress time.Duration
}
