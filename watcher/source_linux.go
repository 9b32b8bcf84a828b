package watcher

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkwatch/linkwatch_exporter/netns"
)

// SourceConfig configures the rtnetlink sockets of Dial.
type SourceConfig struct {
	// NetNS is the path of a network namespace to watch, such as
	// /run/netns/NAME or /proc/PID/ns/net; empty means the caller's own.
	NetNS string
	// ReadBuffer is the receive buffer size, in bytes, asked for the event
	// socket (the kernel doubles it); 0 keeps the system default.
	ReadBuffer int
}

// A socketSource is the production Source: one socket joined to the link
// multicast group for notifications, and a separate one for dumps, since
// dump replies on a subscribed socket get mixed up with notifications.
type socketSource struct {
	events *netlink.Conn
	req    *netlink.Conn
}

// An nsSource is a socketSource in a network namespace named by a path. It
// implements Liveness: its sockets keep the namespace alive and would never
// learn that it was deleted.
type nsSource struct {
	socketSource
	path string
	id   netns.ID // of the namespace the sockets were opened in
}

// Alive implements Liveness.
func (s *nsSource) Alive() error { return netns.Check(s.path, s.id) }

// Dial opens the rtnetlink sockets described by cfg. It subscribes before the
// caller dumps, so that no change falls between the dump and the first
// notification. With cfg.NetNS, a namespace that does not exist (any more)
// gives an error wrapping ErrNetNSGone, and the Source returned implements
// Liveness.
func Dial(cfg SourceConfig) (Source, error) {
	c := func(groups uint32) *netlink.Config { return &netlink.Config{Groups: groups} }
	var ns *nsSource
	if cfg.NetNS != "" {
		f, id, err := netns.Open(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the sockets keep their own references
		ns = &nsSource{path: cfg.NetNS, id: id}
		c = func(groups uint32) *netlink.Config {
			return &netlink.Config{Groups: groups, NetNS: int(f.Fd())}
		}
	}
	dial := func(groups uint32) (*netlink.Conn, error) {
		conn, err := netlink.Dial(unix.NETLINK_ROUTE, c(groups))
		if err != nil {
			if cfg.NetNS != "" && errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("open rtnetlink socket in network namespace %s (watching another namespace needs CAP_SYS_ADMIN): %w", cfg.NetNS, err)
			}
			return nil, fmt.Errorf("open rtnetlink socket: %w", err)
		}
		return conn, nil
	}
	ev, err := dial(unix.RTMGRP_LINK)
	if err != nil {
		return nil, err
	}
	if cfg.ReadBuffer > 0 {
		if err := ev.SetReadBuffer(cfg.ReadBuffer); err != nil {
			_ = ev.Close()
			return nil, fmt.Errorf("set receive buffer: %w", err)
		}
	}
	req, err := dial(0)
	if err != nil {
		_ = ev.Close()
		return nil, err
	}
	if ns != nil {
		ns.socketSource = socketSource{events: ev, req: req}
		return ns, nil
	}
	return &socketSource{events: ev, req: req}, nil
}

// ReadBuffer returns the event socket's effective receive buffer size in
// bytes, or 0 if src is not a socket source or the size cannot be read.
func ReadBuffer(src Source) int {
	var s *socketSource
	switch x := src.(type) {
	case *socketSource:
		s = x
	case *nsSource:
		s = &x.socketSource
	default:
		return 0
	}
	rc, err := s.events.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return n
}

func (s *socketSource) Receive() ([]netlink.Message, error) {
	msgs, err := s.events.Receive()
	if err != nil && errors.Is(err, unix.ENOBUFS) {
		return nil, fmt.Errorf("%w: %w", ErrOverrun, err)
	}
	return msgs, err
}

// maxDumpAttempts bounds the retries of a dump that the kernel marks as
// interrupted (NLM_F_DUMP_INTR: links changed while it ran).
const maxDumpAttempts = 10

func (s *socketSource) Dump() ([]netlink.Message, error) {
	req := netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, unix.SizeofIfInfomsg), // AF_UNSPEC: every link
	}
	for range maxDumpAttempts {
		msgs, err := s.req.Execute(req)
		if err != nil {
			return nil, err
		}
		if !interrupted(msgs) {
			return msgs, nil
		}
	}
	return nil, fmt.Errorf("link dump interrupted %d times in a row", maxDumpAttempts)
}

func interrupted(msgs []netlink.Message) bool {
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return true
		}
	}
	return false
}

func (s *socketSource) Close() error {
	return errors.Join(s.events.Close(), s.req.Close())
}
