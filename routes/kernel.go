package routes

import (
	"errors"
	"log/slog"
	"time"
)

// A KernelConfig configures DialKernel.
type KernelConfig struct {
	// NetNS is the path of the network namespace whose routes are managed,
	// such as /run/netns/NAME or /proc/PID/ns/net; empty for the
	// namespace of the process. Opening a socket in another namespace needs
	// CAP_SYS_ADMIN.
	NetNS string
	// Protocol is the rtm_protocol that marks our routes. Values below 4
	// (unspec, redirect, kernel, boot) are refused: they belong to the
	// kernel and to plain "ip route add".
	Protocol uint8
	// Resolve maps a Route.Device name to its ifindex in NetNS. When it is
	// nil the kernel is asked (RTM_GETLINK on the route socket).
	Resolve func(device string) (ifindex int, ok bool)
	// ReverseResolve maps an ifindex to its name for List. When it is nil
	// or does not know the index, the kernel is asked; if that fails too,
	// the listed Route has an empty Device.
	ReverseResolve func(ifindex int) (device string, ok bool)
	// CheckInterval is how often a Kernel in another namespace (NetNS set)
	// checks that the path still names the namespace its socket was opened
	// in (default 1 s). A socket keeps a deleted namespace alive and gets
	// no error, so once the namespace is gone the Kernel closes its socket
	// to release it; the next request opens a socket in the namespace then
	// at the path, or fails with an error wrapping ErrTemporary while there
	// is none.
	CheckInterval time.Duration
	// Logger receives a line when the socket is released or reopened; nil
	// discards them.
	Logger *slog.Logger
}

// ErrForeignRoute is returned by Replace when a route with the same key
// (table, destination, metric) exists without our protocol: NLM_F_REPLACE
// would overwrite it, so the route is not installed. Use another metric.
var ErrForeignRoute = errors.New("a route with the same table, destination and metric is owned by another protocol")

// Kernel defaults that NormalizeRoute applies.
const (
	mainTable         = 254  // RT_TABLE_MAIN
	ipv6DefaultMetric = 1024 // IP6_RT_PRIO_USER
)

// NormalizeRoute returns r as the kernel stores it and as List reports it:
// destination masked, IPv4 gateway unmapped and without zone, table 0
// replaced by main (254), and an IPv6 metric of 0 replaced by 1024, which
// the kernel substitutes when adding an IPv6 route without a metric. Compare
// normalized routes with List's.
func NormalizeRoute(r Route) Route {
	if r.Destination.IsValid() {
		r.Destination = r.Destination.Masked()
	}
	if r.Gateway.IsValid() {
		r.Gateway = r.Gateway.WithZone("")
		if r.Destination.Addr().Is4() {
			r.Gateway = r.Gateway.Unmap()
		}
	}
	if r.Table == 0 {
		r.Table = mainTable
	}
	if r.Metric == 0 && r.Destination.IsValid() && !r.Destination.Addr().Is4() {
		r.Metric = ipv6DefaultMetric
	}
	return r
}
