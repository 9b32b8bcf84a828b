//go:build linux

package routes

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/linkwatch/linkwatch_exporter/netns"
)

// DialKernel opens a strict rtnetlink request socket (no multicast groups)
// in cfg.NetNS and returns a Kernel that manages the routes carrying
// cfg.Protocol there.
//
// Kernel semantics the implementation relies on (verified on Linux 6.18 by
// kernel_linux_test.go):
//   - The kernel's route delete (IPv4 fib_table_delete, IPv6 ip6_route_del)
//     matches rtm_protocol when it is non-zero in the request, so a DELROUTE
//     carrying our protocol never removes a route of another owner, even one
//     with the same table, destination, metric and gateway (ESRCH instead).
//   - NLM_F_REPLACE does not look at the protocol: it overwrites the first
//     route with the same key (table, destination, tos, metric). Replace
//     therefore adds with NLM_F_EXCL first and only replaces a key that is
//     already ours; a foreign route with the key gives ErrForeignRoute.
//   - An IPv4 delete without RTA_PRIORITY matches any metric, so deleting a
//     metric-0 IPv4 route first checks that exactly that route is ours.
//   - A socket in another namespace keeps that namespace alive after it is
//     deleted, and gets no error: every cfg.CheckInterval the Kernel checks
//     that cfg.NetNS still names the namespace it opened, closes the socket
//     once it does not, and opens one in the namespace then at the path on
//     the next request.
func DialKernel(cfg KernelConfig) (Kernel, error) {
	if cfg.Protocol <= unix.RTPROT_BOOT {
		return nil, fmt.Errorf("routes: protocol %d is reserved for the kernel and for plain \"ip route add\"; use a private value such as %d", cfg.Protocol, DefaultProtocol)
	}
	k := &netlinkKernel{
		proto:   cfg.Protocol,
		resolve: cfg.Resolve,
		reverse: cfg.ReverseResolve,
		netns:   cfg.NetNS,
		logger:  cfg.Logger,
	}
	if k.logger == nil {
		k.logger = slog.New(slog.DiscardHandler)
	}
	if err := k.dialLocked(); err != nil {
		return nil, err
	}
	if cfg.NetNS != "" {
		every := cfg.CheckInterval
		if every <= 0 {
			every = time.Second
		}
		k.done = make(chan struct{})
		go k.watchNetNS(every)
	}
	return k, nil
}

// netlinkKernel implements Kernel on one rtnetlink socket. Every request
// holds mu, so requests and dumps never interleave on the socket.
//
// In another namespace (netns set) the socket pins the namespace it was
// opened in. watchNetNS closes it once that namespace is no longer at the
// path, and the next request opens one in the namespace that is there now.
type netlinkKernel struct {
	mu      sync.Mutex
	conn    *rtnetlink.Conn // nil once closed, or while the namespace is gone
	closed  bool
	proto   uint8
	resolve func(string) (int, bool)
	reverse func(int) (string, bool)

	netns  string
	nsID   netns.ID // of the namespace conn was opened in
	done   chan struct{}
	logger *slog.Logger
}

var errKernelClosed = fmt.Errorf("routes: route socket is closed: %w", net.ErrClosed)

// dialLocked opens the route socket in the namespace at k.netns (the
// process's own if empty). A namespace that does not exist gives an error
// wrapping netns.ErrGone.
func (k *netlinkKernel) dialLocked() error {
	nc := &netlink.Config{Strict: true}
	var id netns.ID
	if k.netns != "" {
		f, nid, err := netns.Open(k.netns)
		if err != nil {
			return fmt.Errorf("routes: opening network namespace: %w", err)
		}
		// The socket keeps the namespace; the file is not needed after Dial.
		defer f.Close()
		nc.NetNS, id = int(f.Fd()), nid
	}
	conn, err := rtnetlink.Dial(nc)
	if err != nil {
		if k.netns != "" && errors.Is(err, unix.EPERM) {
			return fmt.Errorf("routes: opening a route socket in network namespace %s: %w (CAP_SYS_ADMIN is needed to enter another network namespace)", k.netns, err)
		}
		return classifyKernelError("opening a route socket", err)
	}
	k.conn, k.nsID = conn, id
	return nil
}

// readyLocked makes sure k.conn is a socket in the namespace at the path:
// it releases a socket whose namespace is gone and opens one in the
// namespace that is there now. While there is none it returns an error
// wrapping ErrTemporary and netns.ErrGone.
func (k *netlinkKernel) readyLocked() error {
	if k.closed {
		return errKernelClosed
	}
	if k.netns == "" {
		return nil
	}
	if k.conn != nil {
		err := netns.Check(k.netns, k.nsID)
		if !errors.Is(err, netns.ErrGone) {
			return nil // still there, or cannot tell: keep the socket
		}
		k.releaseLocked(err)
	}
	if err := k.dialLocked(); err != nil {
		if errors.Is(err, netns.ErrGone) {
			return fmt.Errorf("%w (%w)", err, ErrTemporary)
		}
		return err
	}
	k.logger.Info("opened a route socket in the network namespace now at the watched path", "netns", k.netns, "id", k.nsID.String())
	return nil
}

// releaseLocked closes the socket of a namespace that is gone, so that the
// kernel can free the namespace and its devices.
func (k *netlinkKernel) releaseLocked(why error) {
	_ = k.conn.Close()
	k.conn = nil
	k.logger.Warn("network namespace of the route socket is gone; closed the socket to release it", "err", why)
}

// watchNetNS releases the socket once its namespace is gone, every interval
// until Close, so that a deleted namespace is freed even while no request
// comes.
func (k *netlinkKernel) watchNetNS(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-k.done:
			return
		case <-t.C:
		}
		k.mu.Lock()
		if k.conn != nil && !k.closed {
			if err := netns.Check(k.netns, k.nsID); errors.Is(err, netns.ErrGone) {
				k.releaseLocked(err)
			}
		}
		k.mu.Unlock()
	}
}

// Close implements Kernel.
func (k *netlinkKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	if k.done != nil {
		close(k.done)
	}
	if k.conn == nil {
		return nil
	}
	err := k.conn.Close()
	k.conn = nil
	return err
}

// Replace implements Kernel.
func (k *netlinkKernel) Replace(r Route) error {
	r = NormalizeRoute(r)
	if err := checkRoute(r); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.readyLocked(); err != nil {
		return err
	}
	oif, ok, err := k.oifLocked(r, "replace")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("routes: replace %s: unknown device %q", r, r.Device)
	}
	m := k.message(r, oif, false)

	// Add first: this is the common case and needs no dump. EEXIST means
	// a route with this key exists; NLM_F_REPLACE would overwrite it
	// whoever owns it, so replace only when that route is ours.
	err = k.conn.Route.Add(m)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return classifyKernelError(fmt.Sprintf("replace %s", r), err)
	}
	ours, err := k.listLocked(familyOf(r))
	if err != nil {
		return fmt.Errorf("routes: replace %s: %w", r, err)
	}
	found := false
	for _, o := range ours {
		if sameKey(o.route, r) {
			found = true
			break
		}
	}
	if !found {
		return fmt.Errorf("routes: replace %s: %w (it does not carry protocol %d; refusing to overwrite it)", r, ErrForeignRoute, k.proto)
	}
	if err := k.conn.Route.Replace(m); err != nil {
		return classifyKernelError(fmt.Sprintf("replace %s", r), err)
	}
	return nil
}

// Delete implements Kernel.
func (k *netlinkKernel) Delete(r Route) error {
	r = NormalizeRoute(r)
	if err := checkRoute(r); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.readyLocked(); err != nil {
		return err
	}
	oif, ok, err := k.oifLocked(r, "delete")
	if err != nil {
		return err
	}
	if !ok {
		// The kernel removes a device's routes with the device, so no
		// route through it can exist.
		return nil
	}
	if familyOf(r) == unix.AF_INET && r.Metric == 0 {
		// Without RTA_PRIORITY the kernel matches any metric and would
		// delete another of our routes with this destination. Make sure
		// the metric-0 route itself is there; the kernel sorts it first.
		ours, err := k.listLocked(unix.AF_INET)
		if err != nil {
			return fmt.Errorf("routes: delete %s: %w", r, err)
		}
		found := false
		for _, o := range ours {
			if sameKey(o.route, r) && (!r.Gateway.IsValid() || o.route.Gateway == r.Gateway) &&
				(oif == 0 || o.oif == oif) {
				found = true
				break
			}
		}
		if !found {
			return nil
		}
	}
	err = k.conn.Route.Delete(k.message(r, oif, true))
	if err == nil || errors.Is(err, unix.ESRCH) {
		// ESRCH: no such route, or not ours.
		return nil
	}
	return classifyKernelError(fmt.Sprintf("delete %s", r), err)
}

// List implements Kernel.
func (k *netlinkKernel) List() ([]Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.readyLocked(); err != nil {
		return nil, err
	}
	var out []Route
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ours, err := k.listLocked(fam)
		if err != nil {
			return nil, err
		}
		for _, o := range ours {
			if o.oif != 0 {
				o.route.Device = k.linkNameLocked(o.oif)
			}
			out = append(out, o.route)
		}
	}
	return out, nil
}

// A listedRoute is one of our routes as dumped, with its outgoing ifindex.
type listedRoute struct {
	route Route
	oif   int
}

// maxDumpAttempts bounds the retries of a dump the kernel marked as
// interrupted (NLM_F_DUMP_INTR: the table changed while it was dumped).
const maxDumpAttempts = 3

// listLocked dumps the routes of family fam that carry our protocol, in
// every table. The strict socket makes the kernel filter on the protocol;
// the protocol is checked again here. Route.Device is left empty.
func (k *netlinkKernel) listLocked(fam uint8) ([]listedRoute, error) {
	req := &rtnetlink.RouteMessage{Family: fam, Protocol: k.proto}
	famName := "IPv4"
	if fam == unix.AF_INET6 {
		famName = "IPv6"
	}
	var msgs []rtnetlink.Message
	for attempt := 1; ; attempt++ {
		var intr bool
		var err error
		msgs, intr, err = k.dumpLocked(req)
		if err != nil {
			return nil, classifyKernelError("listing "+famName+" routes", err)
		}
		if !intr {
			break
		}
		if attempt == maxDumpAttempts {
			return nil, fmt.Errorf("routes: listing %s routes: %w: dump interrupted %d times by concurrent route changes", famName, ErrTemporary, attempt)
		}
	}
	var out []listedRoute
	for _, msg := range msgs {
		m, ok := msg.(*rtnetlink.RouteMessage)
		if !ok || m.Family != fam || m.Protocol != k.proto ||
			m.Type != unix.RTN_UNICAST || m.Flags&unix.RTM_F_CLONED != 0 {
			continue
		}
		out = append(out, listedRoute{route: routeOf(m), oif: int(m.Attributes.OutIface)})
	}
	return out, nil
}

// dumpLocked runs an RTM_GETROUTE dump. It uses Send and Receive instead of
// Execute because Execute hides NLM_F_DUMP_INTR.
func (k *netlinkKernel) dumpLocked(req *rtnetlink.RouteMessage) ([]rtnetlink.Message, bool, error) {
	sent, err := k.conn.Send(req, unix.RTM_GETROUTE, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, false, err
	}
	msgs, raw, err := k.conn.Receive()
	if err != nil {
		return nil, false, err
	}
	if err := netlink.Validate(sent, raw); err != nil {
		return nil, false, err
	}
	intr := false
	for _, m := range raw {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			intr = true
		}
	}
	return msgs, intr, nil
}

// routeOf converts a dumped route message; Device is left empty.
func routeOf(m *rtnetlink.RouteMessage) Route {
	var r Route
	addr := func(ip net.IP) netip.Addr {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return netip.Addr{}
		}
		if m.Family == unix.AF_INET {
			a = a.Unmap()
		}
		return a
	}
	dst := addr(m.Attributes.Dst)
	if !dst.IsValid() {
		if m.Family == unix.AF_INET {
			dst = netip.IPv4Unspecified()
		} else {
			dst = netip.IPv6Unspecified()
		}
	}
	r.Destination = netip.PrefixFrom(dst, int(m.DstLength))
	if m.Attributes.Gateway != nil {
		r.Gateway = addr(m.Attributes.Gateway)
	}
	r.Metric = m.Attributes.Priority
	r.Table = m.Attributes.Table
	if r.Table == 0 {
		r.Table = uint32(m.Table)
	}
	return r
}

// message builds the NEWROUTE or DELROUTE request for the normalized
// route r going out of ifindex oif (0: unspecified).
func (k *netlinkKernel) message(r Route, oif int, del bool) *rtnetlink.RouteMessage {
	fam := familyOf(r)
	m := &rtnetlink.RouteMessage{
		Family:    fam,
		DstLength: uint8(r.Destination.Bits()),
		Protocol:  k.proto,
		Scope:     unix.RT_SCOPE_UNIVERSE,
		Type:      unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{
			OutIface: uint32(oif),
			Priority: r.Metric,
			Table:    r.Table,
		},
	}
	if r.Table < 256 {
		m.Table = uint8(r.Table)
	} else {
		m.Table = unix.RT_TABLE_UNSPEC
	}
	if r.Destination.Bits() > 0 {
		m.Attributes.Dst = net.IP(r.Destination.Addr().AsSlice())
	}
	if r.Gateway.IsValid() {
		m.Attributes.Gateway = net.IP(r.Gateway.AsSlice()) // 4 bytes for IPv4
	}
	// The scopes ip-route(8) uses: IPv6 ignores the scope; an IPv4 route
	// without a gateway is link scope; an IPv4 delete matches any scope.
	if fam == unix.AF_INET {
		switch {
		case del:
			m.Scope = unix.RT_SCOPE_NOWHERE
		case !r.Gateway.IsValid():
			m.Scope = unix.RT_SCOPE_LINK
		}
	}
	return m
}

// linkIndexLocked asks the kernel for the ifindex of device name.
// oifLocked resolves r.Device to an ifindex, through the caller's resolver
// first and the kernel if that does not know it (its view may be stale). A
// route without a device has ifindex 0; ok is false for an unknown device.
func (k *netlinkKernel) oifLocked(r Route, op string) (oif int, ok bool, err error) {
	if r.Device == "" {
		return 0, true, nil
	}
	if k.resolve != nil {
		if oif, ok = k.resolve(r.Device); ok && oif > 0 {
			return oif, true, nil
		}
	}
	oif, ok, err = k.linkIndexLocked(r.Device)
	if err != nil {
		return 0, false, classifyKernelError(fmt.Sprintf("%s %s: looking up device", op, r), err)
	}
	return oif, ok && oif > 0, nil
}

func (k *netlinkKernel) linkIndexLocked(name string) (int, bool, error) {
	req := &rtnetlink.LinkMessage{
		Family:     unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{Name: name},
	}
	msgs, err := k.conn.Execute(req, unix.RTM_GETLINK, netlink.Request)
	if errors.Is(err, unix.ENODEV) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	for _, msg := range msgs {
		if l, ok := msg.(*rtnetlink.LinkMessage); ok && l.Index > 0 {
			return int(l.Index), true, nil
		}
	}
	return 0, false, nil
}

// linkNameLocked names ifindex for List, or returns "".
func (k *netlinkKernel) linkNameLocked(ifindex int) string {
	if k.reverse != nil {
		if name, ok := k.reverse(ifindex); ok {
			return name
		}
	}
	l, err := k.conn.Link.Get(uint32(ifindex))
	if err != nil || l.Attributes == nil {
		return ""
	}
	return l.Attributes.Name
}

// checkRoute validates a normalized route.
func checkRoute(r Route) error {
	if !r.Destination.IsValid() {
		return fmt.Errorf("routes: route %s: invalid destination", r)
	}
	if r.Gateway.IsValid() && r.Gateway.Is4() != r.Destination.Addr().Is4() {
		return fmt.Errorf("routes: route %s: gateway and destination are of different address families", r)
	}
	if !r.Gateway.IsValid() && r.Device == "" {
		return fmt.Errorf("routes: route %s: needs a gateway, a device or both", r)
	}
	return nil
}

func familyOf(r Route) uint8 {
	if r.Destination.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sameKey reports whether two normalized routes have the same kernel key:
// NLM_F_EXCL refuses, and NLM_F_REPLACE overwrites, a route with the key.
func sameKey(a, b Route) bool {
	return a.Destination == b.Destination && a.Table == b.Table && a.Metric == b.Metric
}

// classifyKernelError wraps a netlink error from operation op.
//
// Temporary (wrapped with ErrTemporary, worth retrying):
//   - EAGAIN, EINTR, EBUSY: the request was interrupted or raced with
//     another change;
//   - ENOBUFS, ENOMEM: the socket buffer or kernel memory ran out;
//   - ETIMEDOUT and deadline errors;
//   - ENETUNREACH ("Nexthop has invalid gateway") and EHOSTUNREACH: the
//     gateway is not reachable through a link that is up with an address
//     right now. That is link state, which this program exists to follow:
//     during a failover the backup link may be coming up, or (IPv6) may
//     have lost its addresses on an admin down. A gateway that is never
//     on-link is a configuration error that is then retried in vain, which
//     costs little.
//
// Everything else is permanent: EPERM and EACCES (the message says that
// CAP_NET_ADMIN is needed), EINVAL and the other validation errors, ENODEV
// (the device is gone), EEXIST, and a closed socket.
func classifyKernelError(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("routes: %s: %w (CAP_NET_ADMIN is needed to change routes)", op, err)
	case isTemporaryKernelError(err):
		return fmt.Errorf("routes: %s: %w: %w", op, ErrTemporary, err)
	}
	return fmt.Errorf("routes: %s: %w", op, err)
}

func isTemporaryKernelError(err error) bool {
	for _, e := range []error{
		unix.EAGAIN, unix.EINTR, unix.EBUSY, unix.ENOBUFS, unix.ENOMEM,
		unix.ETIMEDOUT, os.ErrDeadlineExceeded,
		unix.ENETUNREACH, unix.EHOSTUNREACH,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
