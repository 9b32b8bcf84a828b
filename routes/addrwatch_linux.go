package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkwatch/linkwatch_exporter/netns"
)

// WatchAddresses returns a channel that receives a value, coalesced, after
// any IPv4 or IPv6 address is added or removed in the network namespace
// cfg.NetNS (the process's own if empty). Removing an address can delete
// routes without any route notification, so the engine re-checks its routes
// on these events. The socket is closed when ctx is canceled.
//
// A socket in another namespace keeps that namespace alive after it is
// deleted, and gets no error. With cfg.NetNS the watcher therefore checks
// every cfg.CheckInterval that the path still names the namespace it opened;
// once it does not, it closes the socket, which releases the namespace, and
// opens one in the next namespace at the path. Both send a value too: the
// addresses are different ones.
func WatchAddresses(ctx context.Context, cfg AddressWatchConfig) (<-chan struct{}, error) {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pokes := make(chan struct{}, 1)
	poke := func() {
		select {
		case pokes <- struct{}{}:
		default:
		}
	}
	s, err := dialAddresses(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	s.receive(ctx, poke)
	if cfg.NetNS == "" {
		context.AfterFunc(ctx, s.close)
		return pokes, nil
	}
	go func() {
		t := time.NewTicker(cfg.CheckInterval)
		defer t.Stop()
		var lastErr string // of failed reopens, logged when it changes
		for {
			select {
			case <-ctx.Done():
				if s != nil {
					s.close()
				}
				return
			case <-t.C:
			}
			if s != nil {
				err := netns.Check(cfg.NetNS, s.id)
				if !errors.Is(err, netns.ErrGone) {
					continue
				}
				s.close()
				s = nil
				cfg.Logger.Warn("network namespace of the address notification socket is gone; closed the socket to release it", "err", err)
				poke()
			}
			ns, err := dialAddresses(cfg.NetNS)
			if err != nil {
				if !errors.Is(err, netns.ErrGone) && err.Error() != lastErr {
					cfg.Logger.Warn("cannot open the address notification socket; retrying", "err", err)
				}
				lastErr = err.Error()
				continue
			}
			lastErr = ""
			s = ns
			s.receive(ctx, poke)
			cfg.Logger.Info("opened an address notification socket in the network namespace now at the watched path", "netns", cfg.NetNS, "id", s.id.String())
			poke()
		}
	}()
	return pokes, nil
}

// An addrSocket is a socket joined to the address notification groups.
type addrSocket struct {
	conn   *netlink.Conn
	id     netns.ID // of its namespace, if opened in another one
	closed atomic.Bool
}

func dialAddresses(path string) (*addrSocket, error) {
	cfg := &netlink.Config{Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	var id netns.ID
	if path != "" {
		f, nid, err := netns.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cfg.NetNS, id = int(f.Fd()), nid
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("open address notification socket: %w", err)
	}
	return &addrSocket{conn: c, id: id}, nil
}

// receive pokes on every notification until the socket is closed.
func (s *addrSocket) receive(ctx context.Context, poke func()) {
	go func() {
		for {
			// An overrun (ENOBUFS) also means addresses changed: poke.
			if _, err := s.conn.Receive(); err != nil && (ctx.Err() != nil || s.closed.Load()) {
				return
			}
			poke()
		}
	}()
}

func (s *addrSocket) close() {
	s.closed.Store(true)
	_ = s.conn.Close()
}
