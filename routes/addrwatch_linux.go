package routes

import (
	"context"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// WatchAddresses returns a channel that receives a value, coalesced, after
// any IPv4 or IPv6 address is added or removed in the network namespace at
// netns (the process's own if empty). Removing an address can delete routes
// without any route notification, so the engine re-checks its routes on
// these events. The socket is closed when ctx is canceled.
func WatchAddresses(ctx context.Context, netns string) (<-chan struct{}, error) {
	cfg := &netlink.Config{Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("open address notification socket: %w", err)
	}
	pokes := make(chan struct{}, 1)
	context.AfterFunc(ctx, func() { _ = c.Close() })
	go func() {
		for {
			// An overrun (ENOBUFS) also means addresses changed: poke.
			if _, err := c.Receive(); err != nil && ctx.Err() != nil {
				return
			}
			select {
			case pokes <- struct{}{}:
			default:
			}
		}
	}()
	return pokes, nil
}
