package routes

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/linkwatch/linkwatch_exporter/watcher"
)

// fakeKernel is an in-memory Kernel that records calls and can fail.
type fakeKernel struct {
	mu      sync.Mutex
	routes  map[routeKey]Route
	calls   []string
	failAll error
	// gate, if not nil, holds every Replace until it can receive from it
	// (a slow route change).
	gate chan struct{}
}

func newFakeKernel(rs ...Route) *fakeKernel {
	k := &fakeKernel{routes: make(map[routeKey]Route)}
	for _, r := range rs {
		k.routes[keyOf(r)] = r
	}
	return k
}

func (k *fakeKernel) List() ([]Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failAll != nil {
		return nil, k.failAll
	}
	return slices.Collect(maps.Values(k.routes)), nil
}

func (k *fakeKernel) Replace(r Route) error {
	if k.gate != nil {
		<-k.gate
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "replace "+r.String())
	if k.failAll != nil {
		return k.failAll
	}
	k.routes[keyOf(r)] = r
	return nil
}

func (k *fakeKernel) Delete(r Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "delete "+r.String())
	delete(k.routes, keyOf(r))
	return nil
}

func (k *fakeKernel) Close() error { return nil }

func (k *fakeKernel) installed() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, r := range k.routes {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// fakeLinks is a LinkState whose links the test sets.
type fakeLinks map[string]watcher.Link

func (f fakeLinks) Lookup(name string) (watcher.Link, bool) {
	l, ok := f[name]
	return l, ok
}

func (f fakeLinks) set(name string, healthy bool) {
	f[name] = watcher.Link{Name: name, Up: healthy, Carrier: healthy, AdminUp: true}
}

// fakeTransitions never delivers anything; tests call onTransitions.
type fakeTransitions struct{}

func (fakeTransitions) C() <-chan struct{}          { return nil }
func (fakeTransitions) Drain() []watcher.Transition { return nil }

var (
	t0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backup = Route{
		Destination: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.2.0.2"),
		Device: "lwt-b", Metric: 50, Table: 254,
	}
)

func testPolicy(triggers ...Trigger) Policy {
	return Policy{
		Name: "wan", Device: "lwt-a", Triggers: triggers,
		Alert: AlertMatch{
			AlertNames: []string{"LinkwatchLinkDown"}, DeviceLabel: "device",
			Node: []Matcher{{Label: "instance", Regex: regexp.MustCompile(`^(?:r1(:[0-9]+)?)$`), Source: `r1(:[0-9]+)?`}},
		},
		Routes:    []Route{backup},
		DownDelay: time.Second, UpDelay: 10 * time.Second, MinFailoverTime: 30 * time.Second,
	}
}

// harness drives an Engine on the test goroutine with a settable clock.
type harness struct {
	t     *testing.T
	e     *Engine
	k     *fakeKernel
	links fakeLinks
	now   time.Time
}

func newHarness(t *testing.T, p Policy, k *fakeKernel) *harness {
	h := &harness{t: t, k: k, links: fakeLinks{}, now: t0}
	h.links.set(p.Device, true)
	cfg := &Config{Protocol: DefaultProtocol, RepairInterval: 10 * time.Second, Policies: []Policy{p}}
	h.e = NewEngine(cfg, EngineOptions{
		Kernel: k, Links: h.links, Transitions: fakeTransitions{}, Now: func() time.Time { return h.now },
	})
	if err := h.e.adopt(h.now, "restart"); err != nil {
		t.Fatal(err)
	}
	h.step()
	return h
}

// at moves the clock to t0+d and steps the engine.
func (h *harness) at(d time.Duration) time.Time {
	h.now = t0.Add(d)
	return h.step()
}

func (h *harness) step() time.Time {
	h.t.Helper()
	next, err := h.e.step(h.now)
	if err != nil {
		h.t.Fatalf("step at %v: %v", h.now.Sub(t0), err)
	}
	return next
}

func (h *harness) alerts(group string, as ...Alert) []bool {
	h.t.Helper()
	matched := h.e.applyAlerts(group, as)
	if _, err := h.e.step(h.now); err != nil {
		h.t.Fatal(err)
	}
	return matched
}

func (h *harness) active() bool { return h.e.policies[0].active }

func (h *harness) flap(n uint32) {
	h.e.onTransitions([]watcher.Transition{{Name: "lwt-a", Time: h.now, CarrierDowns: n, CarrierUps: n, Up: true, Carrier: true}})
}

func linkDown(instance, device, status string) Alert {
	return Alert{Status: status, Labels: map[string]string{
		"alertname": "LinkwatchLinkDown", "instance": instance, "device": device,
	}}
}

func TestLinkTriggerWithDelays(t *testing.T) {
	h := newHarness(t, testPolicy(TriggerLink), newFakeKernel())
	if h.active() || len(h.k.installed()) != 0 {
		t.Fatal("failed over with a healthy link")
	}
	h.links.set("lwt-a", false)
	if next := h.at(100 * time.Millisecond); !next.Equal(t0.Add(1100 * time.Millisecond)) {
		t.Errorf("next wake-up %v, want at the end of down_delay", next.Sub(t0))
	}
	if h.active() {
		t.Fatal("failed over before down_delay")
	}
	h.at(1100 * time.Millisecond)
	if !h.active() {
		t.Fatal("not failed over after down_delay")
	}
	if diff := cmp.Diff([]string{backup.String()}, h.k.installed()); diff != "" {
		t.Errorf("unexpected routes (-want +got):\n%s", diff)
	}
	// The link comes back: failback waits for up_delay and min_failover_time.
	h.links.set("lwt-a", true)
	h.at(5 * time.Second)
	h.at(14 * time.Second)
	if !h.active() {
		t.Fatal("failed back before up_delay")
	}
	h.at(15 * time.Second) // up for 10 s, but failed over for only 13.9 s
	if !h.active() {
		t.Fatal("failed back before min_failover_time")
	}
	h.at(31100 * time.Millisecond)
	if h.active() {
		t.Fatal("not failed back")
	}
	if got := h.k.installed(); len(got) != 0 {
		t.Errorf("routes left after failback: %v", got)
	}
	want := map[transitionKey]uint64{{"failover", "link"}: 1, {"failback", "link"}: 1}
	if diff := cmp.Diff(want, h.e.policies[0].transitions); diff != "" {
		t.Errorf("unexpected transitions (-want +got):\n%s", diff)
	}
}

func TestShortOutageBelowDownDelay(t *testing.T) {
	h := newHarness(t, testPolicy(TriggerLink), newFakeKernel())
	h.links.set("lwt-a", false)
	h.at(500 * time.Millisecond)
	h.links.set("lwt-a", true)
	h.at(900 * time.Millisecond)
	h.at(5 * time.Second)
	if h.active() || len(h.k.calls) != 0 {
		t.Fatalf("an outage shorter than down_delay caused %v", h.k.calls)
	}
}

func TestAlertTrigger(t *testing.T) {
	h := newHarness(t, testPolicy(TriggerAlert), newFakeKernel())
	// Another node's alert and another device's alert match nothing.
	if m := h.alerts("g", linkDown("r2:9957", "lwt-a", "firing"), linkDown("r1:9957", "eth9", "firing")); !slices.Equal(m, []bool{false, false}) {
		t.Fatalf("matched %v", m)
	}
	if h.active() {
		t.Fatal("failed over on another node's alert")
	}
	// The link itself is healthy, but the alert says otherwise (an upstream
	// failure): fail over at once, and duplicates change nothing.
	for range 3 {
		if m := h.alerts("g", linkDown("r1:9957", "lwt-a", "firing")); !m[0] {
			t.Fatal("alert for this node and device did not match")
		}
	}
	if !h.active() || len(h.k.calls) != 1 {
		t.Fatalf("active %v, kernel calls %v", h.active(), h.k.calls)
	}
	// Resolved while the link is down: stay failed over.
	h.links.set("lwt-a", false)
	h.at(time.Second)
	h.alerts("g", linkDown("r1:9957", "lwt-a", "resolved"))
	h.at(60 * time.Second)
	if !h.active() {
		t.Fatal("a resolved alert alone failed back while the link is down")
	}
	// Link up: failback after up_delay.
	h.links.set("lwt-a", true)
	h.at(61 * time.Second)
	h.at(70 * time.Second)
	if !h.active() {
		t.Fatal("failed back before up_delay")
	}
	h.at(71 * time.Second)
	if h.active() {
		t.Fatal("not failed back after up_delay with the alert resolved")
	}
}

func TestAlertGroupsAreLevelTriggered(t *testing.T) {
	h := newHarness(t, testPolicy(TriggerAlert), newFakeKernel())
	h.alerts("g1", linkDown("r1:9957", "lwt-a", "firing"))
	// A second group with the alert resolved does not cancel the first.
	h.alerts("g2", linkDown("r1:9957", "lwt-a", "resolved"))
	h.at(40 * time.Second)
	if !h.active() {
		t.Fatal("failed back while another group still fires")
	}
	// The first group's next notification no longer lists the alert.
	h.alerts("g1")
	h.at(41 * time.Second)
	if h.active() {
		t.Fatal("did not fail back once no group fires")
	}
}

func TestDampeningSuppressesFailback(t *testing.T) {
	p := testPolicy(TriggerLink)
	p.Dampening = Dampening{Penalty: 1000, HalfLife: 10 * time.Second, Suppress: 2000, Reuse: 750, MaxSuppress: 60 * time.Second}
	p.MinFailoverTime = 0
	h := newHarness(t, p, newFakeKernel())
	h.links.set("lwt-a", false)
	h.at(0)
	h.at(2 * time.Second) // failed over
	h.flap(3)             // penalty 3000 > 2000: suppressed
	h.links.set("lwt-a", true)
	h.at(2 * time.Second)
	if !h.active() {
		t.Fatal("failed back while suppressed")
	}
	// 3000 decays below 750 after 2 half-lives: 20 s.
	if got, want := h.e.damper("lwt-a").reuseAt(p.Dampening, h.now), t0.Add(22*time.Second+time.Millisecond); !got.Equal(want) {
		t.Errorf("reuse at %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	h.at(15 * time.Second)
	if !h.active() {
		t.Fatal("failed back while suppressed")
	}
	h.at(22*time.Second + time.Millisecond)
	if h.active() {
		t.Fatal("not failed back after the penalty decayed below reuse")
	}
	// The ceiling keeps suppression within max_suppress of the last flap.
	d := h.e.damper("lwt-a")
	d.flap(p.Dampening, h.now, 1000)
	if got, want := d.value(p.Dampening, h.now), 750*64.0; got != want {
		t.Errorf("penalty after 1000 flaps %v, want the ceiling %v", got, want)
	}
}

func TestRestartAdoptsInstalledRoutes(t *testing.T) {
	stale := Route{Destination: netip.MustParsePrefix("192.0.2.0/24"), Device: "lwt-b", Metric: 7, Table: 254}
	k := newFakeKernel(backup, stale)
	h := newHarness(t, testPolicy(TriggerLink), k)
	if !h.active() {
		t.Fatal("installed routes not adopted as an active failover")
	}
	if diff := cmp.Diff([]string{backup.String()}, k.installed()); diff != "" {
		t.Errorf("stale route not removed, or ours touched (-want +got):\n%s", diff)
	}
	// No duplicate install of the adopted route.
	if slices.Contains(k.calls, "replace "+backup.String()) {
		t.Errorf("adopted route reinstalled: %v", k.calls)
	}
	// Healthy link: failback after up_delay and min_failover_time counted from the restart.
	h.at(30 * time.Second)
	if h.active() {
		t.Fatal("adopted failover not failed back with a healthy link")
	}
}

func TestRepair(t *testing.T) {
	k := newFakeKernel()
	h := newHarness(t, testPolicy(TriggerLink), k)
	h.links.set("lwt-a", false)
	h.at(0)
	h.at(2 * time.Second)
	k.mu.Lock()
	clear(k.routes) // removed behind our back
	k.mu.Unlock()
	h.at(3 * time.Second)
	if diff := cmp.Diff([]string{backup.String()}, k.installed()); diff != "" {
		t.Errorf("route not repaired (-want +got):\n%s", diff)
	}
	if got := h.e.policies[0].repairs; got != 1 {
		t.Errorf("repairs %d, want 1", got)
	}
}

func TestKernelErrorsAreCounted(t *testing.T) {
	k := newFakeKernel()
	h := newHarness(t, testPolicy(TriggerLink), k)
	h.links.set("lwt-a", false)
	h.at(0)
	k.failAll = errors.New("boom")
	h.now = t0.Add(2 * time.Second)
	if _, err := h.e.step(h.now); err == nil {
		t.Fatal("kernel failure not reported")
	}
	if got := h.e.policies[0].errors; got == 0 {
		t.Error("kernel failure not counted")
	}
	k.failAll = nil
	h.at(3 * time.Second)
	if diff := cmp.Diff([]string{backup.String()}, k.installed()); diff != "" {
		t.Errorf("route not installed once the kernel recovered (-want +got):\n%s", diff)
	}
}

func TestEngineRunAndMetrics(t *testing.T) {
	k := newFakeKernel()
	links := fakeLinks{}
	links.set("lwt-a", true)
	cfg := &Config{Protocol: DefaultProtocol, RepairInterval: time.Second, Policies: []Policy{testPolicy(TriggerAlert)}}
	e := NewEngine(cfg, EngineOptions{Kernel: k, Links: links, Transitions: fakeTransitions{}, Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	matched, err := e.Alerts(ctx, "g", []Alert{linkDown("r1:9957", "lwt-a", "firing")})
	if err != nil || !matched[0] {
		t.Fatalf("Alerts: %v, %v", matched, err)
	}
	if diff := cmp.Diff([]string{backup.String()}, k.installed()); diff != "" {
		t.Errorf("route not installed when Alerts returned (-want +got):\n%s", diff)
	}
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if got := testutil.CollectAndCount(e, "linkwatch_failover_transitions_total"); got != 3 {
		t.Errorf("transition series %d, want 3 (pre-initialised)", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Once Run is gone, Alerts gives up with a temporary error.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := e.Alerts(ctx2, "g", nil); !errors.Is(err, ErrTemporary) {
		t.Errorf("Alerts without Run: %v, want ErrTemporary", err)
	}
}

// TestAlertsGivingUpDoesNotRace makes a notification's route change outlast
// the caller's deadline: Alerts must return a temporary error without a
// result, and the engine applying the alerts afterwards must not write into
// what Alerts returned (the race detector checks; the exporter's race-enabled
// stress test found this).
func TestAlertsGivingUpDoesNotRace(t *testing.T) {
	k := newFakeKernel()
	k.gate = make(chan struct{})
	links := fakeLinks{}
	links.set("lwt-a", true)
	cfg := &Config{Protocol: DefaultProtocol, RepairInterval: time.Hour, Policies: []Policy{testPolicy(TriggerAlert)}}
	e := NewEngine(cfg, EngineOptions{Kernel: k, Links: links, Transitions: fakeTransitions{}, Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	matched, err := e.Alerts(short, "g", []Alert{linkDown("r1:9957", "lwt-a", "firing")})
	cancelShort()
	if !errors.Is(err, ErrTemporary) || matched != nil {
		t.Errorf("Alerts while the route change hangs: %v, %v; want no result and ErrTemporary", matched, err)
	}
	for _, m := range matched {
		_ = m // reading what Alerts returned must not race with the engine
	}
	k.gate <- struct{}{} // the IPv4 route of the hung change goes in
	close(k.gate)
	matched, err = e.Alerts(ctx, "g", []Alert{linkDown("r1:9957", "lwt-a", "firing")})
	if err != nil || len(matched) != 1 || !matched[0] {
		t.Errorf("Alerts after the route change finished: %v, %v; want [true]", matched, err)
	}
	if diff := cmp.Diff([]string{backup.String()}, k.installed()); diff != "" {
		t.Errorf("installed routes (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestIPv6MetricZeroIsNotReinstalled(t *testing.T) {
	p := testPolicy(TriggerLink)
	v6 := Route{Destination: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fd00::2"), Device: "lwt-b", Table: 254}
	p.Routes = []Route{v6}
	k := newFakeKernel()
	h := newHarness(t, p, k)
	h.links.set("lwt-a", false)
	h.at(0)
	h.at(2 * time.Second)
	// The kernel reports the route with metric 1024; a later reconcile must
	// see it as installed, not replace it again.
	k.mu.Lock()
	k.calls = nil
	k.mu.Unlock()
	h.at(3 * time.Second)
	h.at(15 * time.Second)
	if len(k.calls) != 0 {
		t.Errorf("route touched again: %v", k.calls)
	}
	if diff := cmp.Diff([]string{"default via fd00::2 dev lwt-b metric 1024"}, k.installed()); diff != "" {
		t.Errorf("unexpected routes (-want +got):\n%s", diff)
	}
}
