package routes

import (
	"context"
	"errors"
	"time"
)

// ErrTemporary marks errors worth retrying, such as a netlink request that
// failed for a transient reason. The webhook answers them with 503 so that
// Alertmanager retries.
var ErrTemporary = errors.New("temporary failure")

// A Kernel changes and lists the routes this program owns. Every method acts
// only on routes that carry the protocol it was opened with.
type Kernel interface {
	// List returns our installed routes, IPv4 and IPv6, in every table.
	List() ([]Route, error)
	// Replace installs r with NLM_F_CREATE|NLM_F_REPLACE, tagged with our
	// protocol.
	Replace(r Route) error
	// Delete removes r if it is installed with our protocol. Deleting a
	// route that is not there is not an error.
	Delete(r Route) error
	// Close releases the kernel sockets.
	Close() error
}

// An Alert is one alert of an Alertmanager webhook notification (payload
// version 4), reduced to what the failover engine reads.
type Alert struct {
	// Status is "firing" or "resolved".
	Status      string
	Labels      map[string]string
	StartsAt    time.Time
	EndsAt      time.Time
	Fingerprint string
}

// Firing reports whether the alert is firing.
func (a Alert) Firing() bool { return a.Status == "firing" }

// An AlertSink takes the alerts of one webhook notification. Alertmanager
// sends the whole aggregation group every time, so the alerts of a group key
// replace what the previous notification of that group said.
type AlertSink interface {
	// Alerts applies the notification and returns, for each alert, whether
	// it matched a policy. It returns once any resulting route change is
	// applied. An error wrapping ErrTemporary is worth retrying.
	Alerts(ctx context.Context, groupKey string, alerts []Alert) (matched []bool, err error)
}
