package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The TestStress* tests are the reliability suite of RELIABILITY.md. Each
// has a short form, the default, sized for CI, and a long form selected with
// LWT_STRESS=long (make stress). Measured numbers are logged with the prefix
// "MEASURED:".

// stressLong reports whether the long form of the suite was asked for.
func stressLong() bool { return os.Getenv("LWT_STRESS") == "long" }

// stressSize returns long in the long form of the suite and short otherwise.
func stressSize[T any](short, long T) T {
	if stressLong() {
		return long
	}
	return short
}

// stressRand returns a random source seeded from LWT_SEED or, without it,
// from the clock; the seed is logged so that a run can be repeated.
func stressRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LWT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LWT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("random seed %d (repeat with LWT_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

// memory is what the exporter's memory and goroutines look like at one
// moment.
type memory struct {
	HeapInuse  uint64 // bytes, right after a forced garbage collection
	RSS        uint64 // bytes, VmRSS
	Goroutines int    // go_goroutines, counting those of the scrape itself
	// Profiled is the goroutine profile's total, which counts the
	// profiling request but no other passing scrape or connection: the
	// stable figure to compare with a baseline.
	Profiled int
	Stacks   string // the goroutine profile, for when the count is wrong
}

func (m memory) String() string {
	return fmt.Sprintf("heap in use %.1f MiB, RSS %.1f MiB, %d goroutines (%d profiled)",
		float64(m.HeapInuse)/(1<<20), float64(m.RSS)/(1<<20), m.Goroutines, m.Profiled)
}

var (
	heapInuseRE  = regexp.MustCompile(`(?m)^# HeapInuse = (\d+)$`)
	profileTotal = regexp.MustCompile(`(?m)^goroutine profile: total (\d+)$`)
)

// memory forces a garbage collection in the exporter through its
// /debug/pprof/heap?gc=1 endpoint and returns the heap in use after it, the
// process's resident set, and go_goroutines of a scrape right after.
func (e *exporter) memory() (memory, error) {
	var m memory
	b, _, err := e.get("/debug/pprof/heap?gc=1&debug=1", "")
	if err != nil {
		return m, err
	}
	sm := heapInuseRE.FindStringSubmatch(string(b))
	if sm == nil {
		return m, fmt.Errorf("no HeapInuse in the heap profile (%d bytes)", len(b))
	}
	if m.HeapInuse, err = strconv.ParseUint(string(sm[1]), 10, 64); err != nil {
		return m, err
	}
	if m.RSS, err = rssOf(e.cmd.Process.Pid); err != nil {
		return m, err
	}
	f, err := e.tryScrape()
	if err != nil {
		return m, err
	}
	g, err := f.num("go_goroutines")
	if err != nil {
		return m, err
	}
	m.Goroutines = int(g)
	stacks, _, err := e.get("/debug/pprof/goroutine?debug=1", "")
	if err != nil {
		return m, err
	}
	m.Stacks = string(stacks)
	sm = profileTotal.FindStringSubmatch(m.Stacks)
	if sm == nil {
		return m, fmt.Errorf("no total in the goroutine profile (%d bytes)", len(stacks))
	}
	m.Profiled, err = strconv.Atoi(sm[1])
	return m, err
}

// mustMemory is memory that fails the test on error.
func (e *exporter) mustMemory(t testing.TB) memory {
	t.Helper()
	m, err := e.memory()
	if err != nil {
		t.Fatalf("exporter memory: %v", err)
	}
	return m
}

// rssOf returns the resident set size of a process.
func rssOf(pid int) (uint64, error) { return procStatusBytes(pid, "VmRSS") }

// procStatusBytes returns a size field (in kB) of /proc/PID/status in bytes.
func procStatusBytes(pid int, field string) (uint64, error) {
	fields, err := readProcStatus(pid)
	if err != nil {
		return 0, err
	}
	v, ok := fields[field]
	if !ok {
		return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
	}
	kb, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
	return kb << 10, err
}

// settled returns an error if the heap after a run grew more than 25% plus
// slack over before. The resident set is only reported: under the race
// detector it includes shadow memory that the runtime does not give back.
func settled(before, after memory, slack uint64) error {
	if after.HeapInuse > before.HeapInuse+before.HeapInuse/4+slack {
		return fmt.Errorf("heap in use grew from %d to %d bytes", before.HeapInuse, after.HeapInuse)
	}
	return nil
}

// linkwatchSeries returns the number of linkwatch_* series of a scrape (a
// histogram counts once).
func (f families) linkwatchSeries() int {
	n := 0
	for name, mf := range f {
		if strings.HasPrefix(name, "linkwatch_") {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// TestStressStorm flaps many veth pairs in bursts under an exporter with the
// default read buffer and under one with the smallest the kernel allows, and
// requires the exported counters to equal the kernel's afterwards, the timed
// and untimed down periods to add up to the kernel's down count growth, the
// overruns to be followed by resyncs, memory to settle (a second storm
// leaves the heap where the first left it), and a lone flap afterwards to be
// timed again (with the default buffer; the tiny one may count it untimed).
func TestStressStorm(t *testing.T) {
	requireRoot(t)
	pairs := stressSize(150, 1000) // veths: twice as many
	rounds := stressSize(3, 10)    // bursts of down, then up, per storm
	for _, tc := range []struct {
		name, short string
		flags       []string
		overruns    bool // must overrun
	}{
		{"default buffer", "stdf", nil, false},
		{"tiny buffer", "sttb", []string{"--watcher.read-buffer=1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t, tc.short)
			var create, setup, down, up, names []string
			for i := range pairs {
				a, b := fmt.Sprintf("lwt-sa%d", i), fmt.Sprintf("lwt-sb%d", i)
				create = append(create, fmt.Sprintf("link add %s type veth peer name %s", a, b))
				setup = append(setup, "link set "+a+" up", "link set "+b+" up")
				down = append(down, "link set "+b+" down")
				up = append(up, "link set "+b+" up")
				names = append(names, a, b)
			}
			ipBatch(t, ns, append(create, setup...))
			pre := sysfsCounters(t, ns, names...)
			e := startExporter(t, ns, tc.flags...)
			baseline, err := e.scrape(t).firstCounters(pre, names)
			if err != nil {
				t.Fatal(err)
			}
			start := e.mustMemory(t)
			t.Logf("MEASURED: %d links watched, before the storm: %v", len(names), start)

			var after []memory
			for storm := 1; storm <= 2; storm++ {
				stop := e.scrapeConcurrently(2)
				burst := time.Now()
				for range rounds {
					ipBatch(t, ns, down)
					ipBatch(t, ns, up)
				}
				burstEnd := time.Now()
				var c convergence
				took := eventually(t, stressSize(60*time.Second, 300*time.Second), func() error {
					f, err := e.tryScrape()
					if err != nil {
						return err
					}
					c, err = checkConverged(f, ns, names, baseline, tc.overruns)
					return err
				})
				scrapes := stop()
				if scrapes.Err != nil {
					t.Errorf("concurrent scrapes: %v", scrapes.Err)
				}
				if want := uint64(storm * pairs * rounds); c.Flaps < want {
					t.Errorf("only %d carrier down periods counted by the kernel, want at least %d", c.Flaps, want)
				}
				m := e.mustMemory(t)
				after = append(after, m)
				t.Logf("MEASURED: storm %d: %d bursts of %d flaps in %v, counters exact %v after the last burst "+
					"(%d concurrent scrapes); %d down periods since start: %v timed, %v untimed; "+
					"overruns %v, resyncs %v; %v",
					storm, 2*rounds, pairs, burstEnd.Sub(burst).Round(time.Millisecond), took.Round(time.Millisecond),
					scrapes.Count, c.Flaps, c.Timed, c.Untimed, c.Overruns, c.Resyncs, m)
			}
			// Once the storm is over, a lone flap is timed again: 300 ms
			// without carrier on lwt-sa0. The tiny buffer can overrun on
			// the lone flap's few notifications too, and then only has to
			// count it untimed.
			var lone string
			f := e.scrape(t)
			h0, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-sa0")
			if err != nil {
				t.Fatal(err)
			}
			u0 := f.get(t, "linkwatch_link_carrier_down_untimed_total", "device", "lwt-sa0")
			ip(t, ns, "link", "set", "lwt-sb0", "down")
			time.Sleep(300 * time.Millisecond)
			ip(t, ns, "link", "set", "lwt-sb0", "up")
			eventually(t, 10*time.Second, func() error {
				f, err := e.tryScrape()
				if err != nil {
					return err
				}
				if _, err := checkConverged(f, ns, names, baseline, tc.overruns); err != nil {
					return err
				}
				h, err := f.hist("linkwatch_link_down_duration_seconds", "lwt-sa0")
				if err != nil {
					return err
				}
				u, err := f.num("linkwatch_link_carrier_down_untimed_total", "device", "lwt-sa0")
				if err != nil {
					return err
				}
				timed := h.GetSampleCount() - h0.GetSampleCount()
				switch {
				case timed+uint64(u-u0) != 1:
					return fmt.Errorf("lwt-sa0 after a lone flap: timed %d -> %d, untimed %v -> %v; want one more down period",
						h0.GetSampleCount(), h.GetSampleCount(), u0, u)
				case timed == 0 && !tc.overruns:
					return fmt.Errorf("lwt-sa0's lone flap counted untimed with the default buffer")
				case timed == 1:
					if d := h.GetSampleSum() - h0.GetSampleSum(); d < 0.25 || d > 1 {
						return fmt.Errorf("lwt-sa0's lone outage of 300ms timed as %.3fs", d)
					}
				}
				lone = map[uint64]string{0: "untimed", 1: "timed"}[timed]
				return nil
			})
			t.Logf("MEASURED: a lone 300 ms flap after the storms was %s", lone)
			// The state of a link does not grow with its flaps: the
			// second storm must not raise the heap left by the first.
			if err := settled(after[0], after[1], 2<<20); err != nil {
				t.Errorf("memory did not settle after the second storm: %v", err)
			}
			if after[1].Profiled > after[0].Profiled {
				t.Errorf("%d goroutines after the second storm, %d after the first:\n%s", after[1].Profiled, after[0].Profiled, after[1].Stacks)
			}
		})
	}
}

// TestStressChurn creates and deletes veth pairs continuously, each pair a
// fresh name, under an exporter scraped all the while, and requires the
// series count, linkwatch_links, the heap and the goroutine count to return
// to their baseline: no per-link state outlives its link.
func TestStressChurn(t *testing.T) {
	requireRoot(t)
	batch := stressSize(100, 250) // pairs per round
	rounds := stressSize(8, 40)   // after a warm-up round
	ns := newNetns(t, "stch")
	e := startExporter(t, ns)
	next := 0
	// round creates batch pairs and deletes the previous round's, in one
	// ip batch, so that creations and deletions interleave.
	var prev []string
	round := func(create bool) {
		var lines, made []string
		for range batch {
			if !create {
				break
			}
			a, b := fmt.Sprintf("lwt-k%d", next), fmt.Sprintf("lwt-l%d", next)
			next++
			lines = append(lines, fmt.Sprintf("link add %s type veth peer name %s", a, b), "link set "+a+" up", "link set "+b+" up")
			made = append(made, a)
		}
		for _, a := range prev {
			lines = append(lines, "link del "+a) // and its peer
		}
		if len(lines) > 0 {
			ipBatch(t, ns, lines)
		}
		prev = made
	}
	// quiet waits until the exporter shows the namespace with no churn
	// link, and returns its scrape.
	quiet := func(wantLinks float64) families {
		var f families
		eventually(t, 60*time.Second, func() error {
			var err error
			if f, err = e.tryScrape(); err != nil {
				return err
			}
			if _, _, err := f.netlinkHealth(); err != nil {
				return err
			}
			return f.want("linkwatch_links", wantLinks)
		})
		return f
	}
	links := e.scrape(t).get(t, "linkwatch_links")

	// Warm up (caches, pools, the HTTP server's goroutines), then take the
	// baseline.
	stop := e.scrapeConcurrently(1)
	round(true)
	round(false)
	if err := stop().Err; err != nil {
		t.Fatalf("scrapes during the warm-up: %v", err)
	}
	baseF := quiet(links)
	base := e.mustMemory(t)
	baseSeries := baseF.linkwatchSeries()
	t.Logf("MEASURED: baseline after a warm-up round: %d linkwatch series, %v links, %v", baseSeries, links, base)

	stop = e.scrapeConcurrently(2)
	start := time.Now()
	var maxLinks float64
	for i := range rounds {
		round(true)
		if i%4 == 0 {
			if f, err := e.tryScrape(); err == nil {
				if n, err := f.num("linkwatch_links"); err == nil {
					maxLinks = max(maxLinks, n)
				}
			}
		}
	}
	round(false)
	churned := time.Since(start)
	scrapes := stop()
	if scrapes.Err != nil {
		t.Errorf("concurrent scrapes: %v", scrapes.Err)
	}
	lifetimes := 2 * batch * rounds
	f := quiet(links)
	settle := time.Since(start) - churned
	if maxLinks <= links {
		t.Errorf("linkwatch_links never rose above %v during the churn", links)
	}
	if n := f.linkwatchSeries(); n != baseSeries {
		t.Errorf("%d linkwatch series after the churn, %d before", n, baseSeries)
	}
	var m memory
	// Goroutines of finished scrapes and connections take a moment to go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if m, err = e.memory(); err != nil {
			t.Fatal(err)
		}
		if err = settled(base, m, 2<<20); err == nil && m.Profiled > base.Profiled {
			err = fmt.Errorf("%d goroutines profiled, %d at the baseline", m.Profiled, base.Profiled)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("no return to the baseline within 10s: %v\ngoroutines at the baseline:\n%s\nnow:\n%s", err, base.Stacks, m.Stacks)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("MEASURED: %d link lifetimes in %v (%d concurrent scrapes, up to %v links at once), "+
		"back to %v links and %d series %v later; %v (baseline %v)",
		lifetimes, churned.Round(time.Millisecond), scrapes.Count, maxLinks, links, f.linkwatchSeries(),
		settle.Round(time.Millisecond), m, base)
	if lifetimes < stressSize(1000, 20000) {
		t.Errorf("only %d link lifetimes", lifetimes)
	}
}
