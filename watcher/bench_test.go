package watcher

import (
	"runtime"
	"testing"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/linkwatch/linkwatch_exporter/internal/linkmsg"
)

// benchBuckets are the collector's default bounds, repeated here because the
// watcher cannot import the collector.
var benchBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400}

// fakeClock returns a clock that advances by step on every reading.
func fakeClock(step time.Duration) func() time.Time {
	now := time.Now()
	return func() time.Time {
		now = now.Add(step)
		return now
	}
}

// benchWatcher returns a watcher seeded, through its resync path, with the
// given messages.
func benchWatcher(tb testing.TB, msgs []*linkmsg.Msg, now func() time.Time) *Watcher {
	tb.Helper()
	w := New(nil, Options{Buckets: benchBuckets, Now: now})
	if err := w.resync(linkmsg.NewSource(msgs)); err != nil {
		tb.Fatal(err)
	}
	if n := len(w.table.links); n != len(msgs) {
		tb.Fatalf("%d links after the dump, want %d", n, len(msgs))
	}
	return w
}

func TestLinkmsgTemplates(t *testing.T) {
	var u update
	for _, tc := range []struct {
		name    string
		body    []byte
		carrier bool
		oper    OperState
		changes uint32
	}{
		{"captured down", linkmsg.VethDown(), false, OperLowerLayerDown, 3},
		{"captured up", linkmsg.VethUp(), true, OperUp, 4},
	} {
		if err := decodeLink(rtmNewLink, tc.body, &u); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(tc.body) < 1300 || string(u.name) != "vA0" || string(u.kind) != "veth" || u.carrier != tc.carrier ||
			u.operState != tc.oper || !u.hasCounters || u.carrierChanges != tc.changes {
			t.Errorf("%s (%d bytes): decoded %+v", tc.name, len(tc.body), u)
		}
	}
	m := linkmsg.New(4242, "vB2120")
	m.Flip()
	if err := decodeLink(rtmNewLink, m.Data, &u); err != nil {
		t.Fatal(err)
	}
	if string(u.name) != "vB2120" || u.index != 4242 || u.carrier || u.flags&iffLowerUp != 0 ||
		u.operState != OperLowerLayerDown || u.carrierChanges != 2 || u.carrierUp != 1 || u.carrierDown != 1 ||
		formatAddress(u.address) != "02:00:00:00:10:92" {
		t.Errorf("patched message decoded as %+v, address %s", u, formatAddress(u.address))
	}
}

// BenchmarkDecodeApply measures the event path for one notification: decode
// a real 1476-byte veth RTM_NEWLINK and fold it into the state of a
// namespace of 8000 links. Each message flips the carrier of a link with its
// counters advancing by one, so every message closes a timed period and
// observes a histogram: the steady state of a flapping link. msgs/cpu-s is
// the rate per second of the process's CPU time, what one core sustains.
func BenchmarkDecodeApply(b *testing.B) {
	for _, bc := range []struct {
		name     string
		flapping int // links flapped in rotation
	}{
		{"flap=1link", 1},
		{"flap=8000links", 8000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			msgs := linkmsg.Veths(4000)
			w := benchWatcher(b, msgs, fakeClock(time.Millisecond))
			batch := make([]netlink.Message, 1)
			// Warm up: every flapping link has had both kinds of period,
			// so that its histograms exist.
			for i := range 4 * bc.flapping {
				m := msgs[i%bc.flapping]
				m.Flip()
				batch[0] = linkmsg.Message(m.Data)
				w.applyBatch(batch)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			i := 0
			for b.Loop() {
				m := msgs[i]
				if i++; i == bc.flapping {
					i = 0
				}
				m.Flip()
				batch[0] = linkmsg.Message(m.Data)
				w.applyBatch(batch)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			// Per second of CPU, not of wall time: on a shared machine
			// the benchmark waits for a core part of the time.
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "msgs/cpu-s")
			}
			l := w.table.links[msgs[0].Index()]
			if l.DownDurations.Count == 0 || l.UpDurations.Count == 0 || l.UntimedDown != 0 {
				b.Fatalf("flaps were not timed: %+v", l.Link)
			}
		})
	}
}

// BenchmarkResync8000 measures a full dump of 8000 veths applied through the
// watcher's resync path: "initial" into an empty watcher (start-up), "repeat"
// into one that already knows every link (after an overrun).
func BenchmarkResync8000(b *testing.B) {
	msgs := linkmsg.Veths(4000)
	src := linkmsg.NewSource(msgs)
	b.Run("initial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := New(nil, Options{Buckets: benchBuckets, Now: time.Now})
			if err := w.resync(src); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/resync")
	})
	b.Run("repeat", func(b *testing.B) {
		w := benchWatcher(b, msgs, time.Now)
		b.ReportAllocs()
		for b.Loop() {
			if err := w.resync(src); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/resync")
	})
}

// BenchmarkStateMemory reports the heap the watcher's state takes per link
// for 8000 veths, fresh from the dump and after every link flapped (so that
// both of its histograms hold observations).
func BenchmarkStateMemory(b *testing.B) {
	for _, flapped := range []bool{false, true} {
		name := "fresh"
		if flapped {
			name = "flapped"
		}
		b.Run(name, func(b *testing.B) {
			var perLink float64
			for b.Loop() {
				msgs := linkmsg.Veths(4000)
				src := linkmsg.NewSource(msgs)
				before := heapInUse()
				w := New(nil, Options{Buckets: benchBuckets, Now: fakeClock(time.Millisecond)})
				if err := w.resync(src); err != nil {
					b.Fatal(err)
				}
				if flapped {
					batch := make([]netlink.Message, 1)
					for range 4 {
						for _, m := range msgs {
							m.Flip()
							batch[0] = linkmsg.Message(m.Data)
							w.applyBatch(batch)
						}
					}
				}
				after := heapInUse()
				perLink = (float64(after) - float64(before)) / 8000
				runtime.KeepAlive(w)
				runtime.KeepAlive(src)
			}
			b.ReportMetric(perLink, "B/link")
		})
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
