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
	first := e.scrape(t)
	baseline := make(map[string]uint64, len(names))
	for _, n := range names {
		c, err := first.exportedCounters(n)
		if err != nil {
			t.Fatal(err)
		}
		if c != pre[n] {
			t.Fatalf("%s: first scrape shows counters %+v, sysfs before start %+v", n, c, pre[n])
		}
		baseline[n] = c.Down
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

	var overruns, resyncs, timed, untimedTotal float64
	var flaps uint64
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
		if overruns, err = f.num("linkwatch_netlink_overruns_total"); err != nil {
			return err
		}
		if resyncs, err = f.num("linkwatch_netlink_resyncs_total"); err != nil {
			return err
		}
		if overruns == 0 {
			return fmt.Errorf("no overruns counted")
		}
		if resyncs < overruns {
			return fmt.Errorf("%v resyncs for %v overruns", resyncs, overruns)
		}
		if err := f.want("linkwatch_watcher_up", 1); err != nil {
			return err
		}
		// Overruns take the resync path, not the error and backoff one.
		if err := f.want("linkwatch_netlink_receive_errors_total", 0); err != nil {
			return err
		}
		if err := f.want("linkwatch_netlink_decode_errors_total", 0); err != nil {
			return err
		}
		sys, err := readSysfs(ns, names...)
		if err != nil {
			return err
		}
		timed, untimedTotal, flaps = 0, 0, 0
		for _, n := range names {
			c, err := f.exportedCounters(n)
			if err != nil {
				return err
			}
			if c != sys[n] {
				return fmt.Errorf("%s: exported counters %+v, sysfs %+v", n, c, sys[n])
			}
			for _, m := range []string{"linkwatch_link_up", "linkwatch_link_carrier", "linkwatch_link_admin_up"} {
				if err := f.want(m, 1, "device", n); err != nil {
					return err
				}
			}
			h, err := f.hist("linkwatch_link_down_duration_seconds", n)
			if err != nil {
				return err
			}
			untimed, err := f.num("linkwatch_link_carrier_down_untimed_total", "device", n)
			if err != nil {
				return err
			}
			grown := sys[n].Down - baseline[n]
			if got := h.GetSampleCount() + uint64(untimed); got != grown {
				return fmt.Errorf("%s: down histogram count %d + untimed %v = %d, sysfs down count grew by %d",
					n, h.GetSampleCount(), untimed, got, grown)
			}
			timed += float64(h.GetSampleCount())
			untimedTotal += untimed
			flaps += grown
		}
		return nil
	})
	scrapes, err := stopScraping()
	if err != nil {
		t.Errorf("concurrent scrapes: %v", err)
	}
	t.Logf("%d concurrent scrapes during the bursts and convergence; %d polls, %v per scrape and parse",
		scrapes, polls, (pollTime / time.Duration(polls)).Round(time.Millisecond))
	if flaps < uint64(2*pairs*rounds) {
		t.Errorf("only %d carrier down periods counted by the kernel, want at least %d", flaps, 2*pairs*rounds)
	}
	t.Logf("converged %v after the last burst (%v after polling began): overruns %v, resyncs %v; "+
		"%d carrier down periods on %d links: %v timed, %v untimed",
		time.Since(burstEnd).Round(time.Millisecond), took.Round(time.Millisecond),
		overruns, resyncs, flaps, len(names), timed, untimedTotal)
}
