package integration

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestOverrunResync floods an exporter whose notification socket has the
// smallest receive buffer the kernel allows, and checks that it notices the
// lost notifications, resyncs, and ends up agreeing with the kernel.
func TestOverrunResync(t *testing.T) {
	requireRoot(t)
	const pairs, rounds = 300, 3
	ns := newNetns(t, "overrun")
	var create, down, up []string
	var names []string
	for i := range pairs {
		create = append(create, fmt.Sprintf("link add lwt-o%d type veth peer name lwt-p%d", i, i))
		down = append(down, fmt.Sprintf("link set lwt-p%d down", i))
		up = append(up, fmt.Sprintf("link set lwt-p%d up", i))
		names = append(names, fmt.Sprintf("lwt-o%d", i), fmt.Sprintf("lwt-p%d", i))
	}
	for i := range pairs {
		create = append(create, fmt.Sprintf("link set lwt-o%d up", i), fmt.Sprintf("link set lwt-p%d up", i))
	}
	ipBatch(t, ns, create)
	pre := sysfsCounters(t, ns, names...)

	// 1 byte is below the kernel's minimum: it must clamp the buffer, not
	// fail.
	e := startExporter(t, ns, "--watcher.read-buffer=1", "--log.level=debug")
	v, ok := logValue(e.out.String(), "read_buffer_bytes")
	if !ok {
		t.Fatalf("no read_buffer_bytes in the debug log:\n%s", e.out.String())
	}
	rcvbuf, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("read_buffer_bytes=%q: %v", v, err)
	}
	t.Logf("--watcher.read-buffer=1 gave an effective receive buffer of %d bytes", rcvbuf)
	if rcvbuf <= 1 || rcvbuf > 16384 {
		t.Errorf("effective receive buffer %d bytes, want the kernel's small minimum (a few KiB)", rcvbuf)
	}

	// The baseline of each link is what the first scrape shows: nothing
	// flaps until the bursts below, so it must also be what sysfs showed.
	baseline, err := e.scrape(t).firstCounters(pre, names)
	if err != nil {
		t.Fatal(err)
	}

	// Scrapes overlapping each other and the resyncs give the race
	// detector in the binary something to look at.
	stopScraping := e.scrapeConcurrently(2)
	burstStart := time.Now()
	for range rounds {
		ipBatch(t, ns, down)
		ipBatch(t, ns, up)
	}
	burstEnd := time.Now()
	t.Logf("%d rounds of %d peers down then up took %v", rounds, pairs, burstEnd.Sub(burstStart).Round(time.Millisecond))

	var c convergence
	var polls int
	var pollTime time.Duration
	took := eventually(t, 40*time.Second, func() error {
		polls++
		pollStart := time.Now()
		f, err := e.tryScrape()
		pollTime += time.Since(pollStart)
		if err != nil {
			return err
		}
		c, err = checkConverged(f, ns, names, baseline, true)
		return err
	})
	scrapes := stopScraping()
	if scrapes.Err != nil {
		t.Errorf("concurrent scrapes: %v", scrapes.Err)
	}
	t.Logf("%d concurrent scrapes during the bursts and convergence; %d polls, %v per scrape and parse",
		scrapes.Count, polls, (pollTime / time.Duration(polls)).Round(time.Millisecond))
	if c.Flaps < uint64(2*pairs*rounds) {
		t.Errorf("only %d carrier down periods counted by the kernel, want at least %d", c.Flaps, 2*pairs*rounds)
	}
	t.Logf("converged %v after the last burst (%v after polling began): overruns %v, resyncs %v; "+
		"%d carrier down periods on %d links: %v timed, %v untimed",
		time.Since(burstEnd).Round(time.Millisecond), took.Round(time.Millisecond),
		c.Overruns, c.Resyncs, c.Flaps, len(names), c.Timed, c.Untimed)
}
