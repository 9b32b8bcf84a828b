package routes

import (
	"log/slog"
	"time"
)

// AddressWatchConfig configures WatchAddresses.
type AddressWatchConfig struct {
	// NetNS is the path of the network namespace to watch, such as
	// /run/netns/NAME or /proc/PID/ns/net; empty for the process's own.
	NetNS string
	// CheckInterval is how often, with NetNS, the watcher checks that the
	// path still names the namespace its socket was opened in, and tries
	// to open one while there is none (default 1 s).
	CheckInterval time.Duration
	// Logger receives a line when the socket is released or reopened; nil
	// discards them.
	Logger *slog.Logger
}
