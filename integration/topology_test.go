package integration

import (
	be "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The failover topology: a router with a primary and a backup uplink, each
// through its own gateway to an "internet" namespace that holds the test
// address 10.91.9.9.
//
//	           10.91.1.0/24, fd91:1::/64              10.91.3.0/24
//	router lwt-pri ------------------ lwt-g1r gw1 lwt-g1i ------------ lwt-i1 inet
//	       lwt-bak ------------------ lwt-g2r gw2 lwt-g2i ------------ lwt-i2 (lo: 10.91.9.9/32)
//	           10.91.2.0/24, fd91:2::/64              10.91.4.0/24
//
// The router's default routes (IPv4 and IPv6) go through gw1 with metric
// 100; they are foreign routes (proto boot), as an administrator or a
// DHCP client would have added them. The failover policies install a
// default route through gw2 with the better metric 50, which wins while it
// is installed even though the linkdown primary route stays in place
// (ignore_routes_with_linkdown is 0).
//
// Every veth end has its own ifindex, so that the kernel reports carrier
// changes on its urgent path instead of batching them once a second.
const (
	foPri     = "lwt-pri" // router side of the primary uplink
	foBak     = "lwt-bak" // router side of the backup uplink
	foG1R     = "lwt-g1r" // gw1 side of the primary uplink
	foG2R     = "lwt-g2r" // gw2 side of the backup uplink
	foTarget  = "10.91.9.9"
	foGW1     = "10.91.1.2"
	foGW2     = "10.91.2.2"
	foGW2v6   = "fd91:2::2"
	foOurProt = "229" // routes.DefaultProtocol
)

// A foTopo is the failover topology of one test.
type foTopo struct {
	router, gw1, gw2, inet netns
}

// foNewTopology builds the topology in four namespaces lwt-<short>-{rt,g1,g2,in}-<pid>,
// all deleted when the test ends. It also records the router's foreign
// routes (those not carrying our protocol) and checks at the end of the test
// that they are byte-for-byte the same.
func foNewTopology(t *testing.T, short string) *foTopo {
	t.Helper()
	requireRoot(t)
	start := time.Now()
	topo := &foTopo{
		router: newNetns(t, short+"-rt"),
		gw1:    newNetns(t, short+"-g1"),
		gw2:    newNetns(t, short+"-g2"),
		inet:   newNetns(t, short+"-in"),
	}
	for _, ns := range []netns{topo.router, topo.gw1, topo.gw2, topo.inet} {
		// No duplicate address detection: addresses (link-local ones
		// too) are usable at once and stay so across carrier changes.
		args := []string{
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		}
		switch ns {
		case topo.gw1, topo.gw2:
			args = append(args, "net.ipv4.ip_forward=1")
		case topo.router:
			// Explicitly 0: the linkdown primary route keeps
			// attracting traffic, which is what failover is for.
			args = append(args, "net.ipv4.conf.all.ignore_routes_with_linkdown=0",
				"net.ipv4.conf.default.ignore_routes_with_linkdown=0")
		}
		foSysctl(t, ns, args...)
	}
	g1, g2, in := topo.gw1.Name, topo.gw2.Name, topo.inet.Name
	ipBatch(t, topo.router, []string{
		"link add " + foPri + " index 3101 type veth peer name " + foG1R + " index 3201 netns " + g1,
		"link add " + foBak + " index 3102 type veth peer name " + foG2R + " index 3301 netns " + g2,
	})
	ipBatch(t, topo.gw1, []string{"link add lwt-g1i index 3202 type veth peer name lwt-i1 index 3401 netns " + in})
	ipBatch(t, topo.gw2, []string{"link add lwt-g2i index 3302 type veth peer name lwt-i2 index 3402 netns " + in})
	// An admin down of the backup link (TestFailoverRepair) must not take
	// its IPv6 address away for good.
	foSysctl(t, topo.router, "net.ipv6.conf."+foBak+".keep_addr_on_down=1")

	ipBatch(t, topo.router, []string{
		"addr add 10.91.1.1/24 dev " + foPri,
		"addr add fd91:1::1/64 dev " + foPri + " nodad",
		"addr add 10.91.2.1/24 dev " + foBak,
		"addr add fd91:2::1/64 dev " + foBak + " nodad",
		"link set " + foPri + " up",
		"link set " + foBak + " up",
	})
	ipBatch(t, topo.gw1, []string{
		"addr add 10.91.1.2/24 dev " + foG1R,
		"addr add fd91:1::2/64 dev " + foG1R + " nodad",
		"addr add 10.91.3.1/24 dev lwt-g1i",
		"link set " + foG1R + " up",
		"link set lwt-g1i up",
	})
	ipBatch(t, topo.gw2, []string{
		"addr add 10.91.2.2/24 dev " + foG2R,
		"addr add fd91:2::2/64 dev " + foG2R + " nodad",
		"addr add 10.91.4.1/24 dev lwt-g2i",
		"link set " + foG2R + " up",
		"link set lwt-g2i up",
	})
	ipBatch(t, topo.inet, []string{
		"addr add 10.91.3.2/24 dev lwt-i1",
		"addr add 10.91.4.2/24 dev lwt-i2",
		"addr add " + foTarget + "/32 dev lo",
		"link set lwt-i1 up",
		"link set lwt-i2 up",
		// Return routes: each uplink's subnet through its own gateway.
		"route add 10.91.1.0/24 via 10.91.3.1",
		"route add 10.91.2.0/24 via 10.91.4.1",
	})
	ipBatch(t, topo.gw1, []string{"route add " + foTarget + "/32 via 10.91.3.2"})
	ipBatch(t, topo.gw2, []string{"route add " + foTarget + "/32 via 10.91.4.2"})
	ipBatch(t, topo.router, []string{
		// The primary default routes, as "ip route add" makes them
		// (proto boot).
		"route add default via " + foGW1 + " dev " + foPri + " metric 100",
		"route add ::/0 via fd91:1::2 dev " + foPri + " metric 100",
		// Foreign routes that share something with ours: the metric, or
		// the destination and metric in another table. The exporter must
		// never touch them.
		"route add 10.91.50.0/24 via " + foGW1 + " dev " + foPri + " proto static metric 50",
		"route add default via " + foGW1 + " dev " + foPri + " table 100 proto static metric 50",
		"route add fd91:50::/64 via fd91:1::2 dev " + foPri + " proto static metric 50",
	})
	// The uplinks get carrier a moment after they are set up (until then
	// their routes are flagged linkdown), and the kernel adds the local
	// routes of IPv6 addresses (the link-local ones, generated once the
	// link has carrier, too) from a work queue, after the commands above
	// have returned: take the snapshot only once all that is done, or it
	// changes under the test.
	before := foSettledRoutes(t, topo.router, foPri, foBak)
	t.Cleanup(func() {
		// The test may have ended (or failed) with an uplink down: bring
		// both back so that the linkdown flags are as at the start.
		for _, c := range []struct {
			ns  netns
			dev string
		}{{topo.gw1, foG1R}, {topo.router, foBak}, {topo.router, foPri}} {
			_ = exec.Command("ip", "-n", c.ns.Name, "link", "set", c.dev, "up").Run()
		}
		var after string
		deadline := time.Now().Add(3 * time.Second)
		for {
			after = foForeignRoutes(t, topo.router)
			if after == before || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if after != before {
			t.Errorf("the router's foreign routes changed during the test:\nbefore:\n%s\nafter:\n%s", before, after)
		} else {
			t.Logf("foreign routes unchanged (%d lines)", strings.Count(before, "\n"))
		}
	})
	t.Logf("topology %s/%s/%s/%s built in %v", topo.router.Name, topo.gw1.Name, topo.gw2.Name, topo.inet.Name,
		time.Since(start).Round(time.Millisecond))
	return topo
}

// foSysctl sets sysctls inside the namespace (ip netns exec mounts its own
// /proc/sys/net).
func foSysctl(t testing.TB, ns netns, settings ...string) {
	t.Helper()
	args := append([]string{"netns", "exec", ns.Name, "sysctl", "-qw"}, settings...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v: %s", ns.Name, err, out)
	}
}

// foIsOurs reports whether a line of ip-route(8) output is a route with our
// protocol.
func foIsOurs(line string) bool {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "proto" && f[i+1] == foOurProt {
			return true
		}
	}
	return false
}

// foForeignRoutes returns the IPv4 and IPv6 routes of every table of ns that
// do not carry our protocol, as ip-route(8) prints them.
func foForeignRoutes(t testing.TB, ns netns) string {
	t.Helper()
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", fam, "-n", ns.Name, "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s -n %s route show table all: %v: %s", fam, ns.Name, err, out)
		}
		b.WriteString("# " + fam + "\n")
		for line := range strings.Lines(string(out)) {
			if !foIsOurs(line) {
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

// foSettledRoutes waits until no route of ns is flagged linkdown and each of
// devs has a global and a link-local IPv6 address, none of them tentative,
// each with its local route, and then returns foForeignRoutes.
func foSettledRoutes(t testing.TB, ns netns, devs ...string) string {
	t.Helper()
	var routes string
	eventually(t, 10*time.Second, func() error {
		routes = foForeignRoutes(t, ns)
		if strings.Contains(routes, "linkdown") {
			return fmt.Errorf("routes still flagged linkdown:\n%s", routes)
		}
		for _, dev := range devs {
			out, err := exec.Command("ip", "-6", "-n", ns.Name, "-o", "addr", "show", "dev", dev).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ip -6 -n %s addr show dev %s: %v: %s", ns.Name, dev, err, out)
			}
			scopes := make(map[string]bool)
			for line := range strings.Lines(string(out)) {
				f := strings.Fields(line)
				if len(f) < 6 || f[2] != "inet6" {
					continue
				}
				if strings.Contains(line, " tentative") {
					return fmt.Errorf("%s: address %s still tentative", dev, f[3])
				}
				addr, _, _ := strings.Cut(f[3], "/")
				if !strings.Contains(routes, "local "+addr+" dev "+dev+" ") {
					return fmt.Errorf("%s: no local route for %s yet", dev, addr)
				}
				scopes[f[5]] = true
			}
			if !scopes["global"] || !scopes["link"] {
				return fmt.Errorf("%s: IPv6 address scopes %v, want global and link", dev, scopes)
			}
		}
		return nil
	})
	return routes
}

// foAllRoutes returns every route of every table of ns, ours included.
func foAllRoutes(t testing.TB, ns netns) string {
	t.Helper()
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", fam, "-n", ns.Name, "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s -n %s route show table all: %v: %s", fam, ns.Name, err, out)
		}
		b.WriteString("# " + fam + "\n")
		b.Write(out)
	}
	return b.String()
}

// foOurRoutes returns the routes of family fam ("-4" or "-6") that carry our
// protocol, in every table, one trimmed line each.
func foOurRoutes(ns netns, fam string) ([]string, error) {
	out, err := exec.Command("ip", fam, "-n", ns.Name, "route", "show", "table", "all", "proto", foOurProt).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip %s -n %s route show table all proto %s: %v: %s", fam, ns.Name, foOurProt, err, out)
	}
	var lines []string
	for line := range strings.Lines(string(out)) {
		if s := strings.TrimSpace(line); s != "" {
			lines = append(lines, s)
		}
	}
	return lines, nil
}

// foRouteDev returns the device `ip route get` picks for dst in ns.
func foRouteDev(t testing.TB, ns netns, dst string) string {
	t.Helper()
	out := ip(t, ns, "route", "get", dst)
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" {
			return f[i+1]
		}
	}
	t.Fatalf("no device in `ip -n %s route get %s`: %s", ns.Name, dst, out)
	return ""
}

// foRxPackets returns the received packets counter of dev in ns.
func foRxPackets(t testing.TB, ns netns, dev string) uint64 {
	t.Helper()
	out := ip(t, ns, "-s", "-j", "link", "show", "dev", dev)
	var links []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show %s: %v: %s", dev, err, out)
	}
	return links[0].Stats64.Rx.Packets
}

// foPing sends one ICMP echo request to dst from inside ns and waits up to
// timeout for the reply; it is `ping -c1 -W1` without needing iputils (not
// installed on CI). When ping is installed, the test also runs it.
func foPing(t testing.TB, ns netns, dst string, timeout time.Duration) error {
	t.Helper()
	if p, err := exec.LookPath("ping"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, p, "-n", "-c1", "-W1", dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip netns exec %s ping -c1 -W1 %s: %v: %s", ns.Name, dst, err, out)
		}
	}
	fd, err := foSocketIn(ns.Path, unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	addr := net.ParseIP(dst).To4()
	if addr == nil {
		return fmt.Errorf("%s is not an IPv4 address", dst)
	}
	id := uint16(os.Getpid())
	seq := uint16(time.Now().UnixNano())
	msg := make([]byte, 16)
	msg[0] = 8 // echo request
	be.BigEndian.PutUint16(msg[4:], id)
	be.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "lwt-ping")
	be.BigEndian.PutUint16(msg[2:], foChecksum(msg))
	sa := &unix.SockaddrInet4{}
	copy(sa.Addr[:], addr)
	if err := unix.Sendto(fd, msg, 0, sa); err != nil {
		return fmt.Errorf("sending an echo request to %s in %s: %w", dst, ns.Name, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no echo reply from %s in %s within %v", dst, ns.Name, timeout)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("receiving in %s: %w", ns.Name, err)
		}
		// A raw IPv4 socket receives the IP header too.
		if n < 20 {
			continue
		}
		hl := int(buf[0]&0x0f) * 4
		p := buf[hl:n]
		src, ok := from.(*unix.SockaddrInet4)
		if len(p) < 8 || !ok || net.IP(src.Addr[:]).String() != dst {
			continue
		}
		if p[0] == 0 && be.BigEndian.Uint16(p[4:]) == id && be.BigEndian.Uint16(p[6:]) == seq {
			return nil
		}
	}
}

// foSocketIn creates a socket inside the network namespace at nsPath.
func foSocketIn(nsPath string, domain, typ, proto int) (int, error) {
	fd := -1
	err := inNetns(nsPath, func() (err error) {
		fd, err = unix.Socket(domain, typ, proto)
		return err
	})
	return fd, err
}

func foChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// TestFailoverTopology checks the topology itself: traffic to the test
// address leaves through the primary uplink, and the backup path works when
// a better route points at it.
func TestFailoverTopology(t *testing.T) {
	topo := foNewTopology(t, "fotp")
	if dev := foRouteDev(t, topo.router, foTarget); dev != foPri {
		t.Fatalf("route to %s goes through %s, want %s", foTarget, dev, foPri)
	}
	rx1 := foRxPackets(t, topo.gw1, foG1R)
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Fatalf("primary path: %v", err)
	}
	if got := foRxPackets(t, topo.gw1, foG1R); got <= rx1 {
		t.Errorf("gw1 received no packet on %s (%d -> %d)", foG1R, rx1, got)
	}
	// A better foreign route through gw2, removed again: the backup path.
	ip(t, topo.router, "route", "add", foTarget+"/32", "via", foGW2, "dev", foBak, "metric", "10")
	rx2 := foRxPackets(t, topo.gw2, foG2R)
	if err := foPing(t, topo.router, foTarget, time.Second); err != nil {
		t.Fatalf("backup path: %v", err)
	}
	if got := foRxPackets(t, topo.gw2, foG2R); got <= rx2 {
		t.Errorf("gw2 received no packet on %s (%d -> %d)", foG2R, rx2, got)
	}
	ip(t, topo.router, "route", "del", foTarget+"/32", "via", foGW2, "dev", foBak, "metric", "10")
	// The primary uplink loses carrier when gw1's side goes down.
	ip(t, topo.gw1, "link", "set", foG1R, "down")
	eventually(t, 2*time.Second, func() error {
		out := ip(t, topo.router, "link", "show", "dev", foPri)
		if strings.Contains(out, "LOWER_UP") || !strings.Contains(out, "NO-CARRIER") {
			return fmt.Errorf("%s still has carrier: %s", foPri, out)
		}
		return nil
	})
	// ignore_routes_with_linkdown is 0: the dead primary still wins.
	if dev := foRouteDev(t, topo.router, foTarget); dev != foPri {
		t.Errorf("with the primary down, the route to %s goes through %s, want %s (linkdown, still chosen)", foTarget, dev, foPri)
	}
	ip(t, topo.gw1, "link", "set", foG1R, "up")
}
