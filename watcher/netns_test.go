package watcher

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// nsFakeSource is a fakeSource in a network namespace that the test can
// delete: a fake liveness check.
type nsFakeSource struct {
	*fakeSource
	alive  atomic.Pointer[error] // what Alive returns; nil means nil
	checks atomic.Int32
}

func newNSFakeSource(src *fakeSource) *nsFakeSource { return &nsFakeSource{fakeSource: src} }

func (s *nsFakeSource) Alive() error {
	s.checks.Add(1)
	if p := s.alive.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *nsFakeSource) setAlive(err error) { s.alive.Store(&err) }

// errGone is what a liveness check or an opener reports for a deleted
// namespace.
func errGone(what string) error {
	return fmt.Errorf("/run/netns/lwt-test: %w: %s", ErrNetNSGone, what)
}

// logBuffer collects the watcher's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNS starts a watcher whose sources are checked every millisecond and
// reopened after a millisecond.
func startNS(t *testing.T, logs *logBuffer, sub **Subscription, queue ...opened) *harness {
	t.Helper()
	o := Options{AliveInterval: time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Logger: logs.logger()}
	return start(t, o, func(w *Watcher) {
		if sub != nil {
			*sub = w.Subscribe()
		}
	}, queue...)
}

func linkNames(links []Link) []string {
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	return names
}

var ignoreTime = cmpopts.IgnoreFields(Transition{}, "Time")

func sortedTransitions(trs []Transition) []Transition {
	slices.SortFunc(trs, func(a, b Transition) int { return int(a.Index - b.Index) })
	return trs
}

func TestRunNetnsLostAndBack(t *testing.T) {
	t.Parallel()
	first := newNSFakeSource(newFakeSource(
		newlinkMsg(t, 1, "lo", true, 0, 0),
		newlinkMsg(t, 2, "veth0", true, 3, 2),
		newlinkMsg(t, 3, "veth1", false, 1, 1),
	))
	var logs logBuffer
	var sub *Subscription
	h := startNS(t, &logs, &sub, opened{src: first})
	h.waitStats(t, "the watcher to come up", isUp)
	eventually(t, "liveness checks", func() bool { return first.checks.Load() >= 2 })
	if got := len(sub.Drain()); got != 3 {
		t.Fatalf("seed dump published %d transitions, want 3", got)
	}
	// Events still flow while the namespace is there.
	first.send(t, newlinkMsg(t, 2, "veth0", false, 3, 3))
	h.waitLink(t, "veth0", func(l Link) bool { return !l.Carrier })
	sub.Drain()

	// The namespace is deleted: the socket would say nothing, the
	// liveness check tells. While it stays gone, the opener says so.
	h.opener.queue <- opened{err: errGone("open: no such file or directory")}
	h.opener.queue <- opened{err: errGone("not a namespace file")}
	first.setAlive(errGone("stat: no such file or directory"))
	stats := h.waitStats(t, "the loss", func(s Stats) bool { return !s.Up && s.NetNSLost == 1 })
	if !first.isClosed() {
		t.Error("the source of the gone namespace was not closed")
	}
	if stats.Links != 0 {
		t.Errorf("%d links still known after the loss, want 0", stats.Links)
	}
	if links, _ := h.w.Snapshot(nil); len(links) != 0 {
		t.Errorf("links still exported after the loss: %v", linkNames(links))
	}
	want := []Transition{
		{Index: 1, Name: "lo", Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true},
		{Index: 2, Name: "veth0", AdminUp: true, OperState: OperDown, Deleted: true},
		{Index: 3, Name: "veth1", AdminUp: true, OperState: OperDown, Deleted: true},
	}
	if diff := cmp.Diff(want, sortedTransitions(sub.Drain()), ignoreTime); diff != "" {
		t.Errorf("unexpected transitions after the loss (-want +got):\n%s", diff)
	}
	for _, name := range []string{"lo", "veth0", "veth1"} {
		if _, ok := h.w.Lookup(name); ok {
			t.Errorf("Lookup(%q) still finds the link of the gone namespace", name)
		}
	}
	log := logs.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "watched network namespace is gone") ||
		!strings.Contains(log, "links_dropped=3") || !strings.Contains(log, "/run/netns/lwt-test") {
		t.Errorf("no clear warning about the loss in the log:\n%s", log)
	}

	// Opening fails twice because the namespace is still gone: that is
	// waiting, not failing. The third attempt blocks in the opener.
	eventually(t, "three reopen attempts", func() bool { return h.opener.calls.Load() == 4 })
	_, stats = h.w.Snapshot(nil)
	if stats.Up || stats.ReceiveErrors != 0 || stats.NetNSLost != 1 {
		t.Errorf("while the namespace is gone: %+v; want down, no receive errors, one loss", stats)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings while waiting for the namespace, want only the loss:\n%s", n, logs.String())
	}

	// A namespace of the same name comes back: a new namespace, whose
	// ifindex 2 is another device with lower counters.
	second := newNSFakeSource(newFakeSource(
		newlinkMsg(t, 1, "lo", true, 0, 0),
		newlinkMsg(t, 2, "veth2", true, 1, 0),
	))
	h.opener.queue <- opened{src: second}
	stats = h.waitStats(t, "the watcher to come up again", isUp)
	if diff := cmp.Diff(Stats{Up: true, NewLink: 1, Resyncs: 1, NetNSLost: 1, Links: 2}, stats); diff != "" {
		t.Errorf("unexpected stats after the namespace came back (-want +got):\n%s", diff)
	}
	links, _ := h.w.Snapshot(nil)
	if diff := cmp.Diff([]string{"lo", "veth2"}, linkNames(links)); diff != "" {
		t.Errorf("unexpected links after the namespace came back (-want +got):\n%s", diff)
	}
	l := h.waitLink(t, "veth2", func(Link) bool { return true })
	if l.CarrierUpCount != 1 || l.TransitionsUp+l.TransitionsDown != 0 || l.UntimedDown != 0 {
		t.Errorf("veth2 = %+v, want a fresh link with the new namespace's counters", l)
	}
	want = []Transition{
		{Index: 1, Name: "lo", Up: true, AdminUp: true, Carrier: true, OperState: OperUp},
		{Index: 2, Name: "veth2", Up: true, AdminUp: true, Carrier: true, OperState: OperUp},
	}
	if diff := cmp.Diff(want, sortedTransitions(sub.Drain()), ignoreTime); diff != "" {
		t.Errorf("unexpected transitions after the namespace came back (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "a network namespace is back at the watched path") {
		t.Errorf("no log line about the return:\n%s", logs.String())
	}

	// The new namespace is watched, and checked, like the first.
	second.send(t, newlinkMsg(t, 2, "veth2", false, 1, 1))
	h.waitLink(t, "veth2", func(l Link) bool { return !l.Carrier })
	eventually(t, "liveness checks of the new source", func() bool { return second.checks.Load() >= 2 })

	// And lost again.
	second.setAlive(errGone("the path now names another namespace"))
	h.waitStats(t, "the second loss", func(s Stats) bool { return !s.Up && s.NetNSLost == 2 && s.Links == 0 })
	if !second.isClosed() {
		t.Error("the second source was not closed")
	}
}

// TestRunNetnsCheckFails: a liveness check that cannot tell is logged once
// and changes nothing.
func TestRunNetnsCheckFails(t *testing.T) {
	t.Parallel()
	src := newNSFakeSource(newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0)))
	var logs logBuffer
	h := startNS(t, &logs, nil, opened{src: src})
	h.waitStats(t, "the watcher to come up", isUp)
	src.setAlive(errors.New("stat /run/netns/lwt-test: permission denied"))
	n := src.checks.Load()
	eventually(t, "more liveness checks", func() bool { return src.checks.Load() >= n+5 })
	_, stats := h.w.Snapshot(nil)
	if !stats.Up || stats.Links != 1 || stats.NetNSLost != 0 || src.isClosed() {
		t.Errorf("after failed checks: %+v, closed %v; want still up with the link", stats, src.isClosed())
	}
	if c := strings.Count(logs.String(), "cannot check whether the watched network namespace still exists"); c != 1 {
		t.Errorf("the failing check was logged %d times, want once:\n%s", c, logs.String())
	}
	src.setAlive(nil)
	src.send(t, newlinkMsg(t, 1, "eth0", false, 1, 1))
	h.waitLink(t, "eth0", func(l Link) bool { return !l.Carrier })
}

// TestRunNetnsGoneOnReopen: a namespace deleted while the watcher was
// reopening after a receive error is a loss too, found by the opener.
func TestRunNetnsGoneOnReopen(t *testing.T) {
	t.Parallel()
	first := newNSFakeSource(newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0)))
	var logs logBuffer
	var sub *Subscription
	h := startNS(t, &logs, &sub, opened{src: first})
	h.waitStats(t, "the watcher to come up", isUp)
	sub.Drain()
	h.opener.queue <- opened{err: errGone("open: no such file or directory")}
	first.sendBatch(t, batch{err: errors.New("recvmsg: input/output error")})
	stats := h.waitStats(t, "the loss", func(s Stats) bool { return s.NetNSLost == 1 })
	if stats.Up || stats.Links != 0 || stats.ReceiveErrors != 1 {
		t.Errorf("after the loss: %+v; want down, no links, the one receive error", stats)
	}
	want := []Transition{{Index: 1, Name: "eth0", Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true}}
	if diff := cmp.Diff(want, sub.Drain(), ignoreTime); diff != "" {
		t.Errorf("unexpected transitions (-want +got):\n%s", diff)
	}
	h.opener.queue <- opened{src: newNSFakeSource(newFakeSource(newlinkMsg(t, 5, "eth5", true, 1, 0)))}
	h.waitLink(t, "eth5", func(Link) bool { return true })
	h.waitStats(t, "the watcher to come up again", isUp)
}

// TestRunNetnsCancel: canceling while the namespace is gone, and while it
// is watched, stops Run promptly.
func TestRunNetnsCancel(t *testing.T) {
	t.Parallel()
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("gone=%v", gone), func(t *testing.T) {
			t.Parallel()
			src := newNSFakeSource(newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0)))
			h := startNS(t, &logBuffer{}, nil, opened{src: src})
			h.waitStats(t, "the watcher to come up", isUp)
			if gone {
				src.setAlive(errGone("stat: no such file or directory"))
				h.waitStats(t, "the loss", func(s Stats) bool { return s.NetNSLost == 1 })
			}
			if err := h.stop(t); err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
			if !src.isClosed() {
				t.Error("the source was not closed")
			}
		})
	}
}

// TestRunWithoutLiveness: a Source that does not implement Liveness, like
// one in the exporter's own namespace, is never checked.
func TestRunWithoutLiveness(t *testing.T) {
	t.Parallel()
	src := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0))
	h := startNS(t, &logBuffer{}, nil, opened{src: src})
	h.waitStats(t, "the watcher to come up", isUp)
	time.Sleep(20 * time.Millisecond) // twenty check intervals
	if _, s := h.w.Snapshot(nil); !s.Up || s.NetNSLost != 0 || src.isClosed() {
		t.Errorf("stats %+v, closed %v; want up and open", s, src.isClosed())
	}
}
