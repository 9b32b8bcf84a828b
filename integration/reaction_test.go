package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFailoverReaction measures how fast failover reacts (performance target
// 4 of BENCHMARKS.md) in the failover topology, with an independent
// `ip -ts monitor link route` listener in the router namespace timestamping
// the kernel's notifications:
//
//   - link trigger: from the RTM_NEWLINK that reports the primary uplink's
//     carrier loss (the exporter's watcher socket receives the same
//     multicast message) to the RTM_NEWROUTE of the first and of the last
//     backup route (IPv4 and IPv6);
//   - webhook: from sending a firing notification to the backup routes'
//     RTM_NEWROUTE, and to the answer being received (an upper bound of the
//     time from the request received to the route installed and the reply
//     sent).
//
// By default it runs a short form (10 trials of each) against the race
// build, so that the measurement itself keeps working. LWT_BENCH_FAILOVER=1
// runs 100 trials (LWT_BENCH_FAILOVER=N: N trials) against an exporter built
// without the race detector, as `make bench-failover` does;
// LWT_BENCH_FAILOVER_CSV=FILE also writes every sample to FILE, and
// LWT_BENCH_FAILOVER_RT=1 runs the exporter and the listener with real-time
// priority (chrt -f 10, SCHED_FIFO), which shows how much of the tail is
// waiting for a CPU on a busy machine; LWT_BENCH_FAILOVER_RT=listener does
// so for the listener alone, which shows how much of it is the exporter's. The figures are logged with the
// prefix "MEASURED:"; they are never pass criteria.
func TestFailoverReaction(t *testing.T) {
	trials, bin := 10, binary
	v := os.Getenv("LWT_BENCH_FAILOVER")
	bench := v != "" && v != "0"
	if bench {
		trials = 100
		if n, err := strconv.Atoi(v); err == nil && n > 1 {
			trials = n
		}
	}
	topo := foNewTopology(t, "fort")
	dir := foDir(t)
	if bench {
		bin = filepath.Join(dir, "linkwatch_exporter")
		start := time.Now()
		if err := buildExporter(bin); err != nil {
			t.Fatal(err)
		}
		t.Logf("built %s without the race detector in %v", bin, time.Since(start).Round(time.Millisecond))
	}
	var prio, monPrio []string
	switch rt := os.Getenv("LWT_BENCH_FAILOVER_RT"); rt {
	case "", "0":
	case "1", "listener":
		monPrio = []string{requireTool(t, "chrt"), "-f", "10"}
		if rt == "1" {
			prio = monPrio
		}
		t.Logf("LWT_BENCH_FAILOVER_RT=%s: ip monitor (and with 1 the exporter) run with %s", rt, strings.Join(monPrio, " "))
	default:
		t.Fatalf("LWT_BENCH_FAILOVER_RT=%q, want 1 or listener", rt)
	}
	mon := foMonitor(t, topo.router, monPrio...)
	// Failback as soon as the link is back: a trial takes a fraction of a
	// second.
	policy := foPolicy{Triggers: "[link, alert]", UpDelay: 100 * time.Millisecond, MinFail: 100 * time.Millisecond}
	e := foStartCommand(t, slices.Concat(prio, []string{bin}), topo, foWrite(t, filepath.Join(dir, "policy.yml"), policy.yaml()), "")
	foRequireInstalled(t, topo, 0, "before the first trial")

	var res foReaction
	for i := 0; i < trials; i++ {
		foCut(t, topo)
		down := mon.next(t, "carrier loss of "+foPri, foIsCarrier(false))
		installed := mon.routes(t, "backup routes installed", false)
		res.linkFirst = append(res.linkFirst, installed[0].Sub(down.at))
		res.linkAll = append(res.linkAll, installed[1].Sub(down.at))
		foRestore(t, topo)
		mon.next(t, "carrier of "+foPri+" back", foIsCarrier(true))
		mon.routes(t, "backup routes removed", true)
	}
	res.report(t, "link", trials)

	// Alertmanager keeps its connections to a receiver open.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	gk := foGroupKey(foInstance)
	for i := 0; i < trials; i++ {
		firing := foPayload(gk, foLinkAlert("firing", foInstance, foPri))
		sent := time.Now()
		took := e.notifyWith(t, client, firing, 1)
		installed := mon.routes(t, "backup routes installed", false)
		res.hookReply = append(res.hookReply, took)
		res.hookRoute = append(res.hookRoute, installed[1].Sub(sent))
		e.notifyWith(t, client, foPayload(gk, foLinkAlert("resolved", foInstance, foPri)), 1)
		mon.routes(t, "backup routes removed", true)
	}
	res.report(t, "webhook", trials)
	e.wantTransitions(t, 0, map[[2]string]float64{
		{"failover", "link"}: float64(trials), {"failover", "alert"}: float64(trials),
		{"failback", "link"}: float64(2 * trials),
	})
	if f := os.Getenv("LWT_BENCH_FAILOVER_CSV"); f != "" {
		if err := res.writeCSV(f); err != nil {
			t.Error(err)
		}
	}
}

// foReaction holds the samples of TestFailoverReaction.
type foReaction struct {
	linkFirst, linkAll   []time.Duration // carrier loss to the first, to the last backup route
	hookRoute, hookReply []time.Duration // notification sent to both routes, to the answer
}

// report logs the percentiles of one kind of trial.
func (r *foReaction) report(t *testing.T, kind string, trials int) {
	t.Helper()
	if kind == "link" {
		t.Logf("MEASURED: failover reaction, RTM_NEWLINK carrier loss to the first backup route's RTM_NEWROUTE, %d trials: %s", trials, foPercentiles(r.linkFirst))
		t.Logf("MEASURED: failover reaction, RTM_NEWLINK carrier loss to both backup routes (IPv4, IPv6), %d trials: %s", trials, foPercentiles(r.linkAll))
		return
	}
	t.Logf("MEASURED: webhook firing notification sent to both backup routes' RTM_NEWROUTE, %d trials: %s", trials, foPercentiles(r.hookRoute))
	t.Logf("MEASURED: webhook firing notification round-trip (request to reply, routes installed before it), %d trials: %s", trials, foPercentiles(r.hookReply))
}

// writeCSV writes every sample in milliseconds, one trial a line.
func (r *foReaction) writeCSV(path string) error {
	var b strings.Builder
	b.WriteString("trial,link_first_ms,link_all_ms,webhook_route_ms,webhook_reply_ms\n")
	f := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 3, 64) }
	for i := range r.linkFirst {
		fmt.Fprintf(&b, "%d,%s,%s,%s,%s\n", i+1, f(r.linkFirst[i]), f(r.linkAll[i]), f(r.hookRoute[i]), f(r.hookReply[i]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the samples: %w", err)
	}
	return nil
}

// foPercentiles formats the median, p90, p99 (nearest rank) and maximum.
func foPercentiles(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	f := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 3, 64) }
	return fmt.Sprintf("median %s ms, p90 %s ms, p99 %s ms, max %s ms", f(rank(0.5)), f(rank(0.9)), f(rank(0.99)), f(s[len(s)-1]))
}

// A foEvent is one notification as `ip -ts monitor` printed it.
type foEvent struct {
	at   time.Time // when ip received it
	text string    // the first line, without the timestamp
}

// A foMon is an `ip -ts monitor link route` process in a namespace.
type foMon struct {
	events chan foEvent
	done   chan struct{}
}

// foMonitor starts `ip -ts monitor link route` in ns, run through the
// wrapper command if one is given, and returns once it reports events. It is
// stopped when the test ends.
func foMonitor(t *testing.T, ns netns, wrapper ...string) *foMon {
	t.Helper()
	argv := slices.Concat(wrapper, []string{"ip", "-n", ns.Name, "-ts", "monitor", "link", "route"})
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	m := &foMon{events: make(chan foEvent, 4096), done: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-m.done
		_ = cmd.Wait()
	})
	go func() {
		defer close(m.done)
		defer close(m.events)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			// [2026-12-04T03:54:38.154579] 3: lwt-a@lwt-b: <...> ...
			line := sc.Text()
			stamp, text, ok := strings.Cut(strings.TrimPrefix(line, "["), "] ")
			if !ok || !strings.HasPrefix(line, "[") {
				continue // a continuation line
			}
			at, err := time.ParseInLocation("2006-01-02T15:04:05.000000", stamp, time.Local)
			if err != nil {
				continue
			}
			m.events <- foEvent{at, strings.TrimSpace(text)}
		}
	}()
	// A link that comes and goes shows that ip listens (veth: the dummy
	// module may be missing). ip may have started listening after the
	// first one.
	const probe = "lwt-monprobe"
	isProbe := func(ev foEvent) bool { return strings.Contains(ev.text, " "+probe+"@") }
	for try := 1; ; try++ {
		ip(t, ns, "link", "add", probe, "type", "veth", "peer", "name", "lwt-monpeer")
		_, ok := m.tryNext(500*time.Millisecond, isProbe)
		ip(t, ns, "link", "del", probe)
		if ok {
			break
		}
		if try == 10 {
			t.Fatalf("ip monitor in %s reported none of %d probe links", ns.Name, try)
		}
	}
	return m
}

// foLinkLine matches a link notification of the primary uplink and captures
// its flags.
var foLinkLine = regexp.MustCompile(`^(?:Deleted )?\d+: ` + foPri + `(?:@\S+)?: <([^>]*)>`)

// foIsCarrier matches a link notification of the primary uplink with
// (carrier true) or without carrier.
func foIsCarrier(carrier bool) func(foEvent) bool {
	return func(ev foEvent) bool {
		m := foLinkLine.FindStringSubmatch(ev.text)
		if m == nil {
			return false
		}
		flags := strings.Split(m[1], ",")
		return slices.Contains(flags, "LOWER_UP") == carrier && slices.Contains(flags, "NO-CARRIER") != carrier
	}
}

// next returns the first event that matches, discarding the others before
// it; it fails the test if none comes within 5 seconds.
func (m *foMon) next(t *testing.T, what string, match func(foEvent) bool) foEvent {
	t.Helper()
	ev, ok := m.tryNext(5*time.Second, match)
	if !ok {
		t.Fatalf("ip monitor reported no %s within 5s", what)
	}
	return ev
}

// tryNext returns the first event within timeout that matches, discarding
// the others before it, and whether there was one.
func (m *foMon) tryNext(timeout time.Duration, match func(foEvent) bool) (foEvent, bool) {
	expire := time.After(timeout)
	for {
		select {
		case ev, ok := <-m.events:
			if !ok {
				return foEvent{}, false
			}
			if match(ev) {
				return ev, true
			}
		case <-expire:
			return foEvent{}, false
		}
	}
}

// routes waits for the notifications that both backup routes were installed
// (deleted false) or removed, and returns when the first and the last came.
func (m *foMon) routes(t *testing.T, what string, deleted bool) [2]time.Time {
	t.Helper()
	v4, v6 := foBackup(50)
	want := map[string]bool{foRouteLine(v4): true, foRouteLine(v6): true}
	var at [2]time.Time
	for n := 0; len(want) > 0; n++ {
		ev := m.next(t, what, func(ev foEvent) bool {
			text, del := strings.CutPrefix(ev.text, "Deleted ")
			return del == deleted && foIsOurs(text) && want[foRouteLine(text)]
		})
		text, _ := strings.CutPrefix(ev.text, "Deleted ")
		delete(want, foRouteLine(text))
		if n == 0 {
			at[0] = ev.at
		}
		at[1] = ev.at
	}
	return at
}

// foRouteLine reduces a route as ip-route(8) prints it to the form of
// foBackup: without the protocol, and without the flags (linkdown) that
// notifications may carry.
func foRouteLine(s string) string {
	f := strings.Fields(s)
	out := f[:0]
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case "proto":
			i++
		case "linkdown", "onlink", "dead":
		default:
			out = append(out, f[i])
		}
	}
	return strings.Join(out, " ")
}
