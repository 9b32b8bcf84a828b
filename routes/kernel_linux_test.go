//go:build linux

package routes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The tests that need a kernel run in a network namespace of their own,
// lwt-kern-<pid>, holding only a veth pair lwt-a/lwt-b. Nothing outside it
// is touched.

const testProto = DefaultProtocol // 229

// requireRootAndIP skips the test without root or ip(8), or fails it on CI.
func requireRootAndIP(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs ip(8): " + err.Error()
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (required when CI=true)", why)
	}
	t.Skip(why)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// A testNS is a network namespace with lwt-a (10.77.0.1/24, fd77::1/64)
// and its veth peer lwt-b, both up.
type testNS struct {
	name, path string
	ifindex    map[string]int
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	requireRootAndIP(t)
	name := fmt.Sprintf("lwt-kern-%d", os.Getpid())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ns := &testNS{name: name, path: "/run/netns/" + name, ifindex: map[string]int{}}
	ns.ip(t, "link", "add", "lwt-a", "type", "veth", "peer", "name", "lwt-b")
	ns.ip(t, "addr", "add", "10.77.0.1/24", "dev", "lwt-a")
	ns.ip(t, "addr", "add", "fd77::1/64", "dev", "lwt-a", "nodad")
	for _, dev := range []string{"lo", "lwt-a", "lwt-b"} {
		ns.ip(t, "link", "set", dev, "up")
	}
	for _, dev := range []string{"lwt-a", "lwt-b"} {
		var links []struct {
			Ifindex int `json:"ifindex"`
		}
		if err := json.Unmarshal([]byte(ns.ip(t, "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
			t.Fatalf("ifindex of %s: %v %v", dev, links, err)
		}
		ns.ifindex[dev] = links[0].Ifindex
	}
	return ns
}

func (ns *testNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "-n", ns.name}, args...)...)
}

// routes runs "ip [-6] route show ARGS" and returns the lines, blanks
// squeezed. A leading "-6" in args selects IPv6.
func (ns *testNS) routes(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := []string{"route", "show"}
	if len(args) > 0 && args[0] == "-6" {
		cmd, args = []string{"-6", "route", "show"}, args[1:]
	}
	var lines []string
	for l := range strings.Lines(ns.ip(t, append(cmd, args...)...)) {
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	return lines
}

func (ns *testNS) resolve(dev string) (int, bool) {
	i, ok := ns.ifindex[dev]
	return i, ok
}

func (ns *testNS) dial(t *testing.T, cfg KernelConfig) Kernel {
	t.Helper()
	cfg.NetNS = ns.path
	if cfg.Protocol == 0 {
		cfg.Protocol = testProto
	}
	k, err := DialKernel(cfg)
	if err != nil {
		t.Fatalf("DialKernel: %v", err)
	}
	t.Cleanup(func() { // runs before the namespace is deleted
		if err := k.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return k
}

func mustList(t *testing.T, k Kernel) []Route {
	t.Helper()
	rs, err := k.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rs
}

func wantRoutes(t *testing.T, what string, got []Route, want ...Route) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmpopts.SortSlices(func(a, b Route) bool { return fmt.Sprintf("%+v", a) < fmt.Sprintf("%+v", b) }),
		cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

func wantLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestKernelIPv4DefaultRoute(t *testing.T) {
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{Resolve: ns.resolve})

	r := Route{Destination: pfx("0.0.0.0/0"), Gateway: addr("10.77.0.2"), Device: "lwt-a", Metric: 100, Table: 254}
	for i := 0; i < 2; i++ { // the second Replace must change nothing
		if err := k.Replace(r); err != nil {
			t.Fatalf("Replace #%d: %v", i+1, err)
		}
		wantLines(t, "ip route show proto 229", ns.routes(t, "proto", "229"),
			"default via 10.77.0.2 dev lwt-a metric 100")
		wantRoutes(t, "List", mustList(t, k), r)
	}
	// "proto 229" is really what the kernel stored.
	wantLines(t, "ip route show default", ns.routes(t, "default"),
		"default via 10.77.0.2 dev lwt-a proto 229 metric 100")

	// Same key, other gateway: swapped in place.
	r2 := r
	r2.Gateway = addr("10.77.0.3")
	if err := k.Replace(r2); err != nil {
		t.Fatalf("Replace other gateway: %v", err)
	}
	wantRoutes(t, "List after gateway swap", mustList(t, k), r2)

	// Delete is exact: the old gateway no longer matches.
	if err := k.Delete(r); err != nil {
		t.Fatalf("Delete old gateway: %v", err)
	}
	wantRoutes(t, "List after deleting the old gateway", mustList(t, k), r2)

	if err := k.Delete(r2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantLines(t, "ip route show proto 229 after Delete", ns.routes(t, "proto", "229"))
	wantRoutes(t, "List after Delete", mustList(t, k))
	if err := k.Delete(r2); err != nil {
		t.Errorf("Delete of a missing route: %v", err)
	}

	// Without a gateway: a link-scope route; Resolve nil asks the kernel.
	k2 := ns.dial(t, KernelConfig{})
	direct := Route{Destination: pfx("10.55.0.0/16"), Device: "lwt-a", Metric: 5, Table: 254}
	if err := k2.Replace(direct); err != nil {
		t.Fatalf("Replace direct: %v", err)
	}
	wantLines(t, "direct route", ns.routes(t, "proto", "229"),
		"10.55.0.0/16 dev lwt-a scope link metric 5")
	wantRoutes(t, "List direct", mustList(t, k2), direct)
	if err := k2.Delete(direct); err != nil {
		t.Fatalf("Delete direct: %v", err)
	}
	wantLines(t, "after deleting the direct route", ns.routes(t, "proto", "229"))
}

func TestKernelIPv6(t *testing.T) {
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{Resolve: ns.resolve})

	def := Route{Destination: pfx("::/0"), Gateway: addr("fd77::2"), Device: "lwt-a", Metric: 300, Table: 254}
	// Metric 0: the kernel stores 1024; Delete must still find it.
	noMetric := Route{Destination: pfx("fd99::/64"), Gateway: addr("fd77::2"), Table: 254}
	for i := 0; i < 2; i++ {
		for _, r := range []Route{def, noMetric} {
			if err := k.Replace(r); err != nil {
				t.Fatalf("Replace %s #%d: %v", r, i+1, err)
			}
		}
	}
	wantLines(t, "ip -6 route show proto 229", ns.routes(t, "-6", "proto", "229"),
		"fd99::/64 via fd77::2 dev lwt-a metric 1024 pref medium",
		"default via fd77::2 dev lwt-a metric 300 pref medium")
	listed := noMetric
	listed.Metric, listed.Device = 1024, "lwt-a"
	wantRoutes(t, "List", mustList(t, k), listed, def)
	if got := NormalizeRoute(noMetric); got.Metric != 1024 {
		t.Errorf("NormalizeRoute(%s).Metric = %d, want 1024", noMetric, got.Metric)
	}
	for _, r := range []Route{def, noMetric} {
		if err := k.Delete(r); err != nil {
			t.Fatalf("Delete %s: %v", r, err)
		}
	}
	wantLines(t, "after Delete", ns.routes(t, "-6", "proto", "229"))
	if err := k.Delete(def); err != nil {
		t.Errorf("Delete of a missing IPv6 route: %v", err)
	}
}

func TestKernelTable1000(t *testing.T) {
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{Resolve: ns.resolve})

	v4 := Route{Destination: pfx("10.66.0.0/16"), Gateway: addr("10.77.0.2"), Metric: 7, Table: 1000}
	v6 := Route{Destination: pfx("fd66::/48"), Gateway: addr("fd77::2"), Metric: 7, Table: 1000}
	small := Route{Destination: pfx("10.67.0.0/16"), Gateway: addr("10.77.0.2"), Metric: 7, Table: 100}
	for _, r := range []Route{v4, v6, small} {
		if err := k.Replace(r); err != nil {
			t.Fatalf("Replace %s: %v", r, err)
		}
	}
	wantLines(t, "ip route show table 1000 proto 229", ns.routes(t, "table", "1000", "proto", "229"),
		"10.66.0.0/16 via 10.77.0.2 dev lwt-a metric 7")
	wantLines(t, "ip -6 route show table 1000 proto 229", ns.routes(t, "-6", "table", "1000", "proto", "229"),
		"fd66::/48 via fd77::2 dev lwt-a metric 7 pref medium")
	wantLines(t, "main table untouched", ns.routes(t, "proto", "229"))
	// The kernel picked the device; List names it.
	got := mustList(t, k)
	for _, r := range []*Route{&v4, &v6, &small} {
		r.Device = "lwt-a"
	}
	wantRoutes(t, "List", got, v4, small, v6)

	for _, r := range []Route{v4, v6, small} {
		if err := k.Delete(r); err != nil {
			t.Fatalf("Delete %s: %v", r, err)
		}
	}
	wantLines(t, "after Delete", ns.routes(t, "table", "all", "proto", "229"))
	wantLines(t, "after Delete (IPv6)", ns.routes(t, "-6", "table", "all", "proto", "229"))
	wantRoutes(t, "List after Delete", mustList(t, k))
}

// TestKernelForeignRoutes checks that routes of other owners with the same
// key as ours are never listed, deleted or replaced.
func TestKernelForeignRoutes(t *testing.T) {
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{Resolve: ns.resolve})

	ns.ip(t, "route", "add", "10.88.0.0/16", "via", "10.77.0.2", "metric", "50", "proto", "static")
	ns.ip(t, "route", "add", "10.88.0.0/16", "via", "10.77.0.2", "metric", "50", "proto", "static", "table", "1000")
	ns.ip(t, "route", "add", "10.89.0.0/16", "via", "10.77.0.2") // proto boot, metric 0
	ns.ip(t, "-6", "route", "add", "fd88::/64", "via", "fd77::2", "metric", "50", "proto", "static")
	snapshot := func() string {
		return ns.ip(t, "route", "show", "table", "all") + ns.ip(t, "-6", "route", "show", "table", "all")
	}
	before := snapshot()
	for _, want := range []string{"proto kernel", "proto static", "table 1000", "10.89.0.0/16"} {
		if !strings.Contains(before, want) {
			t.Fatalf("setup: no %q in\n%s", want, before)
		}
	}

	wantRoutes(t, "List with only foreign routes", mustList(t, k))

	// Identical keys (and gateways) as the foreign routes.
	foreign := []Route{
		{Destination: pfx("10.88.0.0/16"), Gateway: addr("10.77.0.2"), Metric: 50, Table: 254},
		{Destination: pfx("10.88.0.0/16"), Gateway: addr("10.77.0.2"), Device: "lwt-a", Metric: 50, Table: 1000},
		{Destination: pfx("10.89.0.0/16"), Gateway: addr("10.77.0.2"), Table: 254},
		{Destination: pfx("10.89.0.0/16"), Device: "lwt-a", Table: 254},
		// Kernel routes: the connected prefixes.
		{Destination: pfx("10.77.0.0/24"), Device: "lwt-a", Table: 254},
		{Destination: pfx("fd77::/64"), Device: "lwt-a", Metric: 256, Table: 254},
		{Destination: pfx("fd88::/64"), Gateway: addr("fd77::2"), Metric: 50, Table: 254},
		// IPv4 metric 0 matches any metric in the kernel.
		{Destination: pfx("10.88.0.0/16"), Gateway: addr("10.77.0.2"), Table: 254},
	}
	for _, r := range foreign {
		if err := k.Delete(r); err != nil {
			t.Errorf("Delete %s: %v", r, err)
		}
	}
	// Same keys, other gateways: Replace must refuse, not overwrite.
	for _, r := range foreign[:len(foreign)-1] {
		if r.Gateway.Is4() {
			r.Gateway = addr("10.77.0.3")
		} else if r.Gateway.IsValid() {
			r.Gateway = addr("fd77::3")
		}
		if err := k.Replace(r); !errors.Is(err, ErrForeignRoute) || errors.Is(err, ErrTemporary) {
			t.Errorf("Replace %s over a foreign route: %v, want ErrForeignRoute", r, err)
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("foreign routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Ours next to theirs, same destination, another metric.
	ours := Route{Destination: pfx("10.88.0.0/16"), Gateway: addr("10.77.0.3"), Metric: 60, Table: 254}
	if err := k.Replace(ours); err != nil {
		t.Fatalf("Replace ours: %v", err)
	}
	ours.Device = "lwt-a"
	wantRoutes(t, "List with ours", mustList(t, k), ours)
	// Metric 0 and no gateway must not reach our metric-60 route either.
	if err := k.Delete(Route{Destination: pfx("10.88.0.0/16"), Device: "lwt-a", Table: 254}); err != nil {
		t.Errorf("Delete metric 0: %v", err)
	}
	wantRoutes(t, "List after deleting metric 0", mustList(t, k), ours)
	if err := k.Delete(ours); err != nil {
		t.Fatalf("Delete ours: %v", err)
	}
	wantRoutes(t, "List after deleting ours", mustList(t, k))
	if after := snapshot(); after != before {
		t.Errorf("foreign routes changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestKernelDevices(t *testing.T) {
	ns := newTestNS(t)
	r := Route{Destination: pfx("10.44.0.0/16"), Gateway: addr("10.77.0.2"), Device: "lwt-nope", Metric: 1, Table: 254}
	for name, cfg := range map[string]KernelConfig{
		"Resolve":        {Resolve: ns.resolve},
		"kernel lookup":  {},
		"stale Resolve":  {Resolve: func(string) (int, bool) { return 0, false }},
		"ReverseResolve": {ReverseResolve: func(i int) (string, bool) { return "renamed", i == ns.ifindex["lwt-a"] }},
	} {
		k := ns.dial(t, cfg)
		if err := k.Replace(r); err == nil || !strings.Contains(err.Error(), `unknown device "lwt-nope"`) {
			t.Errorf("%s: Replace via an unknown device: %v", name, err)
		}
		if err := k.Delete(r); err != nil {
			t.Errorf("%s: Delete via an unknown device: %v", name, err)
		}
		if name == "ReverseResolve" {
			ok := Route{Destination: pfx("10.44.0.0/16"), Gateway: addr("10.77.0.2"), Metric: 1, Table: 254}
			if err := k.Replace(ok); err != nil {
				t.Fatal(err)
			}
			ok.Device = "renamed"
			wantRoutes(t, "List with ReverseResolve", mustList(t, k), ok)
			// "renamed" is unknown to the kernel: nothing to delete.
			if err := k.Delete(ok); err != nil {
				t.Errorf("Delete via a name the kernel does not know: %v", err)
			}
			wantRoutes(t, "List after Delete via unknown name", mustList(t, k), ok)
			ok.Device = ""
			if err := k.Delete(ok); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantLines(t, "no routes left", ns.routes(t, "proto", "229"))
}

func TestKernelConcurrentUse(t *testing.T) {
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{Resolve: ns.resolve})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			r := Route{Destination: pfx(fmt.Sprintf("10.33.%d.0/24", i)), Gateway: addr("10.77.0.2"), Metric: 9, Table: 254}
			for range 20 {
				if err := k.Replace(r); err != nil {
					t.Error(err)
					return
				}
				if _, err := k.List(); err != nil {
					t.Error(err)
					return
				}
				if err := k.Delete(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantRoutes(t, "List", mustList(t, k))
}

func TestKernelDialAndClose(t *testing.T) {
	if _, err := DialKernel(KernelConfig{Protocol: 0}); err == nil {
		t.Error("DialKernel with protocol 0 succeeded")
	}
	if _, err := DialKernel(KernelConfig{Protocol: 3}); err == nil {
		t.Error("DialKernel with protocol 3 (boot) succeeded")
	}
	if _, err := DialKernel(KernelConfig{Protocol: testProto, NetNS: "/run/netns/lwt-does-not-exist"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DialKernel with a missing namespace: %v", err)
	}
	ns := newTestNS(t)
	k := ns.dial(t, KernelConfig{})
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	r := Route{Destination: pfx("10.1.0.0/16"), Gateway: addr("10.77.0.2")}
	if _, err := k.List(); err == nil {
		t.Error("List after Close succeeded")
	}
	if err := k.Replace(r); err == nil {
		t.Error("Replace after Close succeeded")
	}
	if err := k.Delete(r); err == nil {
		t.Error("Delete after Close succeeded")
	}
	// Validation happens before the kernel is asked.
	k = ns.dial(t, KernelConfig{})
	for _, bad := range []Route{
		{Destination: pfx("10.1.0.0/16")}, // neither gateway nor device
		{Destination: pfx("10.1.0.0/16"), Gateway: addr("fd77::2")},
		{Gateway: addr("10.77.0.2")},
	} {
		if err := k.Replace(bad); err == nil {
			t.Errorf("Replace %+v succeeded", bad)
		}
	}
}

func TestKernelErrorClassification(t *testing.T) {
	kernelErr := func(e syscall.Errno) error { // as the kernel's NLMSG_ERROR arrives
		return &netlink.OpError{Op: "receive", Err: e}
	}
	sysErr := func(call string, e syscall.Errno) error { // as a failed syscall arrives
		return &netlink.OpError{Op: "receive", Err: os.NewSyscallError(call, e)}
	}
	for _, tc := range []struct {
		err       error
		temporary bool
		contains  string
	}{
		{kernelErr(unix.EAGAIN), true, ""},
		{kernelErr(unix.EBUSY), true, ""},
		{kernelErr(unix.EINTR), true, ""},
		{kernelErr(unix.ENOMEM), true, ""},
		{sysErr("recvmsg", unix.ENOBUFS), true, ""},
		{sysErr("sendmsg", unix.EINTR), true, ""},
		{&netlink.OpError{Op: "receive", Err: unix.ENETUNREACH, Message: "Nexthop has invalid gateway"}, true, "Nexthop has invalid gateway"},
		{kernelErr(unix.EHOSTUNREACH), true, ""},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true, ""},
		{kernelErr(unix.EPERM), false, "CAP_NET_ADMIN"},
		{sysErr("sendmsg", unix.EACCES), false, "CAP_NET_ADMIN"},
		{kernelErr(unix.EINVAL), false, ""},
		{kernelErr(unix.EEXIST), false, ""},
		{kernelErr(unix.ENODEV), false, ""},
		{kernelErr(unix.ESRCH), false, ""},
		{errors.New("netlink validate: mismatched sequence in netlink reply"), false, ""},
	} {
		err := classifyKernelError("replace default", tc.err)
		if got := errors.Is(err, ErrTemporary); got != tc.temporary {
			t.Errorf("%v: temporary = %v, want %v (%v)", tc.err, got, tc.temporary, err)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: the cause is not wrapped: %v", tc.err, err)
		}
		if !strings.Contains(err.Error(), "replace default") || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%v: message %q lacks the operation or %q", tc.err, err, tc.contains)
		}
	}
	if err := classifyKernelError("x", nil); err != nil {
		t.Errorf("classifyKernelError(nil) = %v", err)
	}
	if err := classifyKernelError("x", kernelErr(unix.EPERM)); !errors.Is(err, os.ErrPermission) {
		t.Errorf("EPERM does not match os.ErrPermission: %v", err)
	}
}

func TestKernelHasNetAdmin(t *testing.T) {
	ok, err := HasNetAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && !ok {
		t.Error("HasNetAdmin() = false as root")
	}
	t.Logf("euid %d, CAP_NET_ADMIN %v", os.Geteuid(), ok)
}
