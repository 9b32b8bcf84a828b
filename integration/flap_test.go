package integration

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestFlapDurations flaps a veth and checks that the exporter times each
// carrier outage to within 100 ms, and that its counters agree with the
// kernel's.
func TestFlapDurations(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "flap")
	// Distinct ifindexes on the two ends make the kernel treat their
	// carrier events as urgent instead of batching them once a second.
	ipBatch(t, ns, []string{
		"link add lwt-a index 100 type veth peer name lwt-b index 200",
		"link set lwt-a up",
		"link set lwt-b up",
	})
	base := sysfsCounters(t, ns, "lwt-a", "lwt-b")
	e := startExporter(t, ns)
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		return f.want("linkwatch_link_up", 1, "device", "lwt-a")
	})
	f := e.scrape(t)
	if got := uint64(f.get(t, "linkwatch_link_carrier_down_changes_total", "device", "lwt-a")); got != base["lwt-a"].Down {
		t.Fatalf("lwt-a down count at start: exported %d, sysfs %d", got, base["lwt-a"].Down)
	}
	down0, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-a")
	if err != nil {
		t.Fatal(err)
	}
	prevCount, prevSum := down0.GetSampleCount(), down0.GetSampleSum()
	prevUntimed := f.get(t, "linkwatch_link_carrier_down_untimed_total", "device", "lwt-a")

	outages := []time.Duration{300 * time.Millisecond, time.Second, 3 * time.Second}
	var report []string
	for i, outage := range outages {
		// The peer going down takes lwt-a's carrier away.
		ip(t, ns, "link", "set", "lwt-b", "down")
		downDone := time.Now()
		time.Sleep(outage)
		upStart := time.Now()
		ip(t, ns, "link", "set", "lwt-b", "up")
		scripted := upStart.Sub(downDone)

		var count uint64
		var sum, untimed float64
		var upCount uint64
		eventually(t, 10*time.Second, func() error {
			f, err := e.tryScrape()
			if err != nil {
				return err
			}
			h, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-a")
			if err != nil {
				return err
			}
			uh, err := f.hist("linkwatch_link_up_duration_seconds", "lwt-a")
			if err != nil {
				return err
			}
			if untimed, err = f.num("linkwatch_link_carrier_down_untimed_total", "device", "lwt-a"); err != nil {
				return err
			}
			count, sum, upCount = h.GetSampleCount(), h.GetSampleSum(), uh.GetSampleCount()
			if count+uint64(untimed) < prevCount+uint64(prevUntimed)+1 {
				return fmt.Errorf("outage %d: down histogram count %d + untimed %v has not moved from %d + %v",
					i+1, count, untimed, prevCount, prevUntimed)
			}
			return nil
		})
		if count != prevCount+1 || untimed != prevUntimed {
			t.Fatalf("outage %d: down histogram count %d -> %d, untimed %v -> %v; want exactly one timed outage",
				i+1, prevCount, count, prevUntimed, untimed)
		}
		// The first up period began before the exporter started, so only
		// the ones between outages are timed.
		if upCount != uint64(i) {
			t.Errorf("outage %d: up histogram count %d, want %d", i+1, upCount, i)
		}
		measured := secs(sum - prevSum)
		diff := measured - scripted
		line := fmt.Sprintf("outage %d: scripted %s, measured %s, error %+.1fms",
			i+1, ms(scripted), ms(measured), float64(diff)/float64(time.Millisecond))
		report = append(report, line)
		t.Log(line)
		if math.Abs(float64(diff)) > float64(100*time.Millisecond) {
			t.Errorf("%s: more than 100ms off", line)
		}
		prevCount, prevSum = count, sum
		time.Sleep(500 * time.Millisecond)
	}

	var last families
	eventually(t, 10*time.Second, func() error {
		f, err := e.tryScrape()
		if err != nil {
			return err
		}
		sys, err := readSysfs(ns, "lwt-a", "lwt-b")
		if err != nil {
			return err
		}
		for _, dev := range []string{"lwt-a", "lwt-b"} {
			got, err := f.exportedCounters(dev)
			if err != nil {
				return err
			}
			if got != sys[dev] {
				return fmt.Errorf("%s: exported counters %+v, sysfs %+v", dev, got, sys[dev])
			}
		}
		h, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-a")
		if err != nil {
			return err
		}
		untimed, err := f.num("linkwatch_link_carrier_down_untimed_total", "device", "lwt-a")
		if err != nil {
			return err
		}
		if got, want := h.GetSampleCount()+uint64(untimed), sys["lwt-a"].Down-base["lwt-a"].Down; got != want {
			return fmt.Errorf("lwt-a: down histogram count %d + untimed %v = %d, sysfs down count grew by %d",
				h.GetSampleCount(), untimed, got, want)
		}
		last = f
		return nil
	})
	if v := last.get(t, "linkwatch_link_transitions_total", "device", "lwt-a", "to", "down"); v < 3 {
		t.Errorf("lwt-a transitions to down = %v, want >= 3", v)
	}
	if v := last.get(t, "linkwatch_link_up", "device", "lwt-a"); v != 1 {
		t.Errorf("lwt-a up = %v, want 1", v)
	}
	ts := last.get(t, "linkwatch_link_last_change_timestamp_seconds", "device", "lwt-a")
	if age := time.Since(time.Unix(0, int64(ts*1e9))); age < -time.Second || age > 5*time.Second {
		t.Errorf("lwt-a last change timestamp %v is %v from now", ts, age)
	}
	// Every scrape must show the same, settled histogram.
	want, _ := last.hist("linkwatch_link_down_duration_seconds", "lwt-a")
	for range 10 {
		h, err := e.scrape(t).hist("linkwatch_link_down_duration_seconds", "lwt-a")
		if err != nil {
			t.Fatal(err)
		}
		if h.GetSampleCount() != want.GetSampleCount() || h.GetSampleSum() != want.GetSampleSum() {
			t.Fatalf("down histogram changed between scrapes without flaps: count %d sum %v, then count %d sum %v",
				want.GetSampleCount(), want.GetSampleSum(), h.GetSampleCount(), h.GetSampleSum())
		}
	}
	sys := sysfsCounters(t, ns, "lwt-a")
	t.Logf("lwt-a: sysfs down count %d -> %d; flap timing:\n%s", base["lwt-a"].Down, sys["lwt-a"].Down, strings.Join(report, "\n"))
}
