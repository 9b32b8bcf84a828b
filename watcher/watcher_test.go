package watcher

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
)

// linkMsg returns an RTM_NEWLINK (or RTM_DELLINK, by typ) netlink message
// about an admin up device with carrier counters.
func linkMsg(t testing.TB, typ uint16, index int32, name string, carrier bool, up, down uint32) netlink.Message {
	t.Helper()
	flags := uint32(iffUp)
	if carrier {
		flags |= iffLowerUp
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ)},
		Data: ifinfomsg(t, afUnspec, index, flags, func(ae *netlink.AttributeEncoder) {
			linkAttrs(name, carrier, up, down)(ae)
			ae.Bytes(iflaAddress, []byte{0x02, 0, 0, 0, 0, byte(index)})
		}),
	}
}

func newlinkMsg(t testing.TB, index int32, name string, carrier bool, up, down uint32) netlink.Message {
	t.Helper()
	return linkMsg(t, rtmNewLink, index, name, carrier, up, down)
}

var errSourceClosed = errors.New("fake source closed")

// A batch is what one Receive returns.
type batch struct {
	msgs []netlink.Message
	err  error
}

// fakeSource is a Source fed by the test.
type fakeSource struct {
	batches chan batch
	dump    func() ([]netlink.Message, error)
	closed  chan struct{}
	once    sync.Once
}

func newFakeSource(dump ...netlink.Message) *fakeSource {
	return &fakeSource{
		batches: make(chan batch),
		dump:    func() ([]netlink.Message, error) { return dump, nil },
		closed:  make(chan struct{}),
	}
}

func (f *fakeSource) Receive() ([]netlink.Message, error) {
	select {
	case <-f.closed:
		return nil, errSourceClosed
	default:
	}
	select {
	case b := <-f.batches:
		return b.msgs, b.err
	case <-f.closed:
		return nil, errSourceClosed
	}
}

func (f *fakeSource) Dump() ([]netlink.Message, error) { return f.dump() }

func (f *fakeSource) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeSource) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// send hands one batch to the watcher's Receive.
func (f *fakeSource) send(t *testing.T, msgs ...netlink.Message) {
	t.Helper()
	f.sendBatch(t, batch{msgs: msgs})
}

func (f *fakeSource) sendBatch(t *testing.T, b batch) {
	t.Helper()
	select {
	case f.batches <- b:
	case <-f.closed:
		t.Fatal("send to a closed source")
	case <-time.After(10 * time.Second):
		t.Fatal("timed out handing a batch to Receive")
	}
}

// An opened is what one Opener call returns.
type opened struct {
	src Source
	err error
}

// fakeOpener hands out the sources the test queues, and blocks until there
// is one.
type fakeOpener struct {
	ctx   context.Context
	queue chan opened
	calls atomic.Int32
}

func (o *fakeOpener) open() (Source, error) {
	o.calls.Add(1)
	select {
	case r := <-o.queue:
		if r.err != nil {
			return nil, r.err
		}
		return r.src, nil
	case <-o.ctx.Done():
		return nil, o.ctx.Err()
	}
}

// A harness runs a Watcher over fake sources.
type harness struct {
	w      *Watcher
	opener *fakeOpener
	cancel context.CancelFunc
	done   chan error
}

// start runs a watcher over the queued open results until the test ends.
// setup, if not nil, runs before Run, as for subscribing.
func start(t *testing.T, o Options, setup func(w *Watcher), queue ...opened) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		opener: &fakeOpener{ctx: ctx, queue: make(chan opened, 16)},
		cancel: cancel,
		done:   make(chan error, 1),
	}
	for _, r := range queue {
		h.opener.queue <- r
	}
	h.w = New(h.opener.open, o)
	if setup != nil {
		setup(h.w)
	}
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancellation")
		}
	})
	return h
}

// stop cancels Run and returns its result.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return promptly after cancellation")
		return nil
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// find returns the link named name from a snapshot.
func find(links []Link, name string) (Link, bool) {
	i := slices.IndexFunc(links, func(l Link) bool { return l.Name == name })
	if i < 0 {
		return Link{}, false
	}
	return links[i], true
}

// waitLink waits until the snapshot has a link named name for which cond
// holds, and returns it.
func (h *harness) waitLink(t *testing.T, name string, cond func(Link) bool) Link {
	t.Helper()
	var l Link
	eventually(t, "link "+name, func() bool {
		links, _ := h.w.Snapshot(nil)
		var ok bool
		l, ok = find(links, name)
		return ok && cond(l)
	})
	return l
}

func (h *harness) waitStats(t *testing.T, what string, cond func(Stats) bool) Stats {
	t.Helper()
	var s Stats
	eventually(t, what, func() bool {
		_, s = h.w.Snapshot(nil)
		return cond(s)
	})
	return s
}

func isUp(s Stats) bool { return s.Up }

func TestRunSeedThenEvent(t *testing.T) {
	t.Parallel()
	src := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0), newlinkMsg(t, 2, "eth1", true, 3, 2))
	h := start(t, Options{}, nil, opened{src: src})

	h.waitStats(t, "the watcher to come up", isUp)
	links, stats := h.w.Snapshot(nil)
	if len(links) != 2 {
		t.Fatalf("seed dump gave %d links, want 2", len(links))
	}
	if l, _ := find(links, "eth1"); l.CarrierDownCount != 2 || !l.Up || l.Address != "02:00:00:00:00:02" {
		t.Errorf("eth1 = %+v, want up with down count 2", l)
	}
	if diff := cmp.Diff(Stats{Up: true, Links: 2}, stats); diff != "" {
		t.Errorf("unexpected stats after the dump (-want +got):\n%s", diff)
	}

	src.send(t, newlinkMsg(t, 2, "eth1", false, 3, 3))
	l := h.waitLink(t, "eth1", func(l Link) bool { return !l.Carrier })
	if l.Up || l.CarrierDownCount != 3 || l.TransitionsDown != 1 || l.UntimedDown != 0 {
		t.Errorf("eth1 after the event = %+v, want down with a counted open period", l)
	}
	_, stats = h.w.Snapshot(nil)
	if diff := cmp.Diff(Stats{Up: true, NewLink: 1, Links: 2}, stats); diff != "" {
		t.Errorf("unexpected stats after the event (-want +got):\n%s", diff)
	}
}

func TestRunOverrun(t *testing.T) {
	t.Parallel()
	first := newFakeSource(newlinkMsg(t, 1, "eth0", true, 2, 1), newlinkMsg(t, 2, "eth1", true, 1, 0))
	// While the socket overran, eth0 came up, went down and up again, and
	// eth1 was deleted.
	second := newFakeSource(newlinkMsg(t, 1, "eth0", true, 4, 3))
	var sub *Subscription
	h := start(t, Options{}, func(w *Watcher) { sub = w.Subscribe() }, opened{src: first}, opened{src: second})

	h.waitStats(t, "the watcher to come up", isUp)
	if got := len(sub.Drain()); got != 2 {
		t.Errorf("seed dump published %d transitions, want 2", got)
	}
	first.send(t, newlinkMsg(t, 1, "eth0", false, 2, 2))
	h.waitLink(t, "eth0", func(l Link) bool { return !l.Carrier })
	first.sendBatch(t, batch{err: fmt.Errorf("%w: recvmsg: no buffer space available", ErrOverrun)})

	stats := h.waitStats(t, "the resync", func(s Stats) bool { return s.Resyncs == 1 && s.Up })
	if diff := cmp.Diff(Stats{Up: true, NewLink: 1, Overruns: 1, Resyncs: 1, Links: 1}, stats); diff != "" {
		t.Errorf("unexpected stats after the overrun (-want +got):\n%s", diff)
	}
	if got := h.opener.calls.Load(); got != 2 {
		t.Errorf("opener called %d times, want 2", got)
	}
	if !first.isClosed() {
		t.Error("the overrun source was not closed")
	}
	links, _ := h.w.Snapshot(nil)
	if _, ok := find(links, "eth1"); ok || len(links) != 1 {
		t.Errorf("links after the resync: %v, want only eth0", links)
	}

	wantTrs := []Transition{
		// The event (one down) and the dump (two ups, one down) merged.
		{Index: 1, Name: "eth0", Up: true, AdminUp: true, Carrier: true, OperState: OperUp, CarrierUps: 2, CarrierDowns: 2},
		{Index: 2, Name: "eth1", Up: true, AdminUp: true, Carrier: true, OperState: OperUp, Deleted: true},
	}
	ignoreTime := cmpopts.IgnoreFields(Transition{}, "Time")
	if diff := cmp.Diff(wantTrs, sub.Drain(), ignoreTime); diff != "" {
		t.Errorf("unexpected transitions after the resync (-want +got):\n%s", diff)
	}

	// Counting continues from the dump: a replayed message with the dump's
	// counters and an older one change nothing, the next flap counts once.
	second.send(t, newlinkMsg(t, 1, "eth0", true, 4, 3), newlinkMsg(t, 1, "eth0", false, 2, 2))
	second.send(t, newlinkMsg(t, 1, "eth0", false, 4, 4))
	l := h.waitLink(t, "eth0", func(l Link) bool { return !l.Carrier })
	wantTrs = []Transition{{Index: 1, Name: "eth0", AdminUp: true, OperState: OperDown, CarrierDowns: 1}}
	if diff := cmp.Diff(wantTrs, sub.Drain(), ignoreTime); diff != "" {
		t.Errorf("unexpected transitions after the resync (-want +got):\n%s", diff)
	}
	// Down periods counted since eth0 was first seen at down count 1: the
	// event's, one lost in the overrun, and the open one.
	if l.CarrierDownCount != 4 || l.DownDurations.Count+l.UntimedDown != 2 {
		t.Errorf("eth0: down count %d, timed %d, untimed %d; want 4, 2 closed periods",
			l.CarrierDownCount, l.DownDurations.Count, l.UntimedDown)
	}
	second.send(t, newlinkMsg(t, 1, "eth0", true, 5, 4))
	l = h.waitLink(t, "eth0", func(l Link) bool { return l.Carrier })
	if l.DownDurations.Count != 1 || l.UntimedDown != 2 {
		t.Errorf("eth0: timed %d, untimed %d; want 1, 2 (down count grew by 3)", l.DownDurations.Count, l.UntimedDown)
	}
}

func TestRunReceiveErrorReopens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fail func(t *testing.T, src *fakeSource)
		// dumps is the number of successful dumps before the failure.
		dumps uint64
	}{
		{
			name: "receive error",
			fail: func(t *testing.T, src *fakeSource) {
				src.sendBatch(t, batch{err: errors.New("recvmsg: input/output error")})
			},
			dumps: 1,
		},
		{
			name: "dump error",
			fail: func(t *testing.T, src *fakeSource) {
				src.dump = func() ([]netlink.Message, error) { return nil, errors.New("dump: interrupted") }
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0))
			if tt.dumps == 0 {
				tt.fail(t, first)
			}
			h := start(t, Options{MinBackoff: time.Millisecond}, nil, opened{src: first})
			if tt.dumps > 0 {
				h.waitStats(t, "the watcher to come up", isUp)
				tt.fail(t, first)
			}

			// The opener blocks until the test queues a second source.
			stats := h.waitStats(t, "the reopen", func(Stats) bool { return h.opener.calls.Load() == 2 })
			if stats.Up || stats.ReceiveErrors != 1 {
				t.Errorf("while reopening: Up %v, %d receive errors; want false, 1", stats.Up, stats.ReceiveErrors)
			}
			if !first.isClosed() {
				t.Error("the failed source was not closed")
			}

			second := newFakeSource(newlinkMsg(t, 1, "eth0", true, 2, 1))
			h.opener.queue <- opened{src: second}
			stats = h.waitStats(t, "the watcher to come up again", isUp)
			if stats.ReceiveErrors != 1 || stats.Resyncs != tt.dumps || stats.Overruns != 0 {
				t.Errorf("after reopening: %+v, want 1 receive error, %d resyncs", stats, tt.dumps)
			}
			l := h.waitLink(t, "eth0", func(l Link) bool { return true })
			if l.CarrierDownCount != 1 {
				t.Errorf("eth0 down count %d, want 1 from the new dump", l.CarrierDownCount)
			}
		})
	}
}

func TestRunBacksOffWhileOpenFails(t *testing.T) {
	t.Parallel()
	first := newFakeSource()
	h := start(t, Options{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, nil, opened{src: first})
	h.waitStats(t, "the watcher to come up", isUp)
	for range 3 {
		h.opener.queue <- opened{err: errors.New("socket: too many open files")}
	}
	first.sendBatch(t, batch{err: errors.New("recvmsg: input/output error")})
	stats := h.waitStats(t, "failed reopens", func(Stats) bool { return h.opener.calls.Load() == 5 })
	if stats.Up || stats.ReceiveErrors != 4 {
		t.Errorf("after 3 failed reopens: Up %v, %d receive errors; want false, 4", stats.Up, stats.ReceiveErrors)
	}
	h.opener.queue <- opened{src: newFakeSource()}
	h.waitStats(t, "the watcher to come up again", isUp)
}

func TestRunFirstOpenFails(t *testing.T) {
	t.Parallel()
	errOpen := errors.New("socket: permission denied")
	h := start(t, Options{}, nil, opened{err: errOpen})
	select {
	case err := <-h.done:
		h.done <- err
		if !errors.Is(err, errOpen) {
			t.Errorf("Run() = %v, want an error wrapping %v", err, errOpen)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := h.opener.calls.Load(); got != 1 {
		t.Errorf("opener called %d times, want 1", got)
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// prepare brings the watcher into the state to cancel in.
		prepare func(t *testing.T, h *harness, src *fakeSource)
	}{
		{
			name: "while receiving",
			prepare: func(t *testing.T, h *harness, src *fakeSource) {
				h.waitStats(t, "the watcher to come up", isUp)
			},
		},
		{
			name: "while backing off",
			prepare: func(t *testing.T, h *harness, src *fakeSource) {
				h.waitStats(t, "the watcher to come up", isUp)
				src.sendBatch(t, batch{err: errors.New("recvmsg: input/output error")})
				h.waitStats(t, "the receive error", func(s Stats) bool { return s.ReceiveErrors == 1 })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0))
			h := start(t, Options{MinBackoff: time.Hour}, nil, opened{src: src})
			tt.prepare(t, h, src)
			if err := h.stop(t); err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
			if !src.isClosed() {
				t.Error("the source was not closed")
			}
			if _, s := h.w.Snapshot(nil); s.Up {
				t.Error("Up is still true after Run returned")
			}
			if got := h.opener.calls.Load(); got != 1 {
				t.Errorf("opener called %d times, want 1", got)
			}
		})
	}
}

func TestRunDecodeErrors(t *testing.T) {
	t.Parallel()
	src := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0), newlinkMsg(t, 2, "eth1", true, 1, 0))
	h := start(t, Options{}, nil, opened{src: src})
	h.waitStats(t, "the watcher to come up", isUp)

	bad := newlinkMsg(t, 1, "eth0", false, 1, 1)
	bad.Data = bad.Data[:sizeofIfInfomsg-2]
	badAttr := newlinkMsg(t, 2, "eth1", false, 1, 1)
	badAttr.Data = append(badAttr.Data, rawAttr(iflaMTU, 0, []byte{1})...)
	other := netlink.Message{Header: netlink.Header{Type: 20}, Data: []byte{1, 2, 3}} // RTM_NEWADDR
	src.send(t, bad, badAttr, other, newlinkMsg(t, 3, "eth2", true, 1, 0), linkMsg(t, rtmDelLink, 2, "eth1", true, 1, 0))

	stats := h.waitStats(t, "the batch", func(s Stats) bool { return s.Links == 2 && s.DelLink == 1 })
	if diff := cmp.Diff(Stats{Up: true, NewLink: 3, DelLink: 1, Other: 1, DecodeErrors: 2, Links: 2}, stats); diff != "" {
		t.Errorf("unexpected stats (-want +got):\n%s", diff)
	}
	links, _ := h.w.Snapshot(nil)
	if l, ok := find(links, "eth0"); !ok || !l.Carrier {
		t.Errorf("eth0 = %+v, %v; want unchanged by the bad message", l, ok)
	}
	if _, ok := find(links, "eth2"); !ok {
		t.Error("eth2 after the bad messages was not applied")
	}
}

func TestSubscription(t *testing.T) {
	t.Parallel()
	ignoreTime := cmpopts.IgnoreFields(Transition{}, "Time")

	t.Run("merges changes of one link", func(t *testing.T) {
		t.Parallel()
		src := newFakeSource(newlinkMsg(t, 1, "eth0", true, 1, 0), newlinkMsg(t, 2, "eth1", true, 1, 0))
		var sub *Subscription
		h := start(t, Options{}, func(w *Watcher) { sub = w.Subscribe() }, opened{src: src})
		h.waitStats(t, "the watcher to come up", isUp)
		select {
		case <-sub.C():
		default:
			t.Error("C has no value with transitions waiting")
		}
		sub.Drain()

		src.send(t, newlinkMsg(t, 2, "eth1", false, 1, 1))
		src.send(t, newlinkMsg(t, 1, "eth0", false, 1, 1))
		src.send(t, newlinkMsg(t, 2, "eth1", true, 2, 1))
		src.send(t, newlinkMsg(t, 2, "eth1", true, 4, 3))
		h.waitLink(t, "eth1", func(l Link) bool { return l.CarrierDownCount == 3 })
		select {
		case <-sub.C():
		case <-time.After(10 * time.Second):
			t.Fatal("C did not signal")
		}
		want := []Transition{
			{Index: 2, Name: "eth1", Up: true, AdminUp: true, Carrier: true, OperState: OperUp, CarrierUps: 3, CarrierDowns: 3},
			{Index: 1, Name: "eth0", AdminUp: true, OperState: OperDown, CarrierDowns: 1},
		}
		if diff := cmp.Diff(want, sub.Drain(), ignoreTime); diff != "" {
			t.Errorf("unexpected transitions (-want +got):\n%s", diff)
		}
		if got := sub.Drain(); len(got) != 0 {
			t.Errorf("second Drain returned %v, want nothing", got)
		}
	})

	t.Run("an undrained subscriber never blocks the watcher", func(t *testing.T) {
		t.Parallel()
		const links, events = 3, 10_000
		var dump []netlink.Message
		for i := range int32(links) {
			dump = append(dump, newlinkMsg(t, i+1, fmt.Sprintf("eth%d", i), true, 1, 0))
		}
		src := newFakeSource(dump...)
		var idle, closed *Subscription
		h := start(t, Options{}, func(w *Watcher) { idle, closed = w.Subscribe(), w.Subscribe() }, opened{src: src})
		h.waitStats(t, "the watcher to come up", isUp)
		closed.Close()
		if got := closed.Drain(); len(got) != links {
			t.Errorf("subscriber got %d seed transitions before Close, want %d", len(got), links)
		}

		// Each event is one flap of one link; carrier alternates per link.
		counts := make([]uint32, links) // flaps per link
		for i := range events {
			idx := i % links
			counts[idx]++
			n := counts[idx]
			up, down := 1+n/2, (n+1)/2
			src.send(t, newlinkMsg(t, int32(idx+1), fmt.Sprintf("eth%d", idx), n%2 == 0, up, down))
		}
		h.waitStats(t, "all events", func(s Stats) bool { return s.NewLink == events })

		got := idle.Drain()
		if len(got) != links {
			t.Fatalf("undrained subscriber has %d entries, want one per link (%d)", len(got), links)
		}
		slices.SortFunc(got, func(a, b Transition) int { return int(a.Index - b.Index) })
		for i, tr := range got {
			n := counts[i]
			// From the dump's baseline of 1 up, 0 down.
			if tr.Index != int32(i+1) || tr.CarrierUps != n/2 || tr.CarrierDowns != (n+1)/2 || tr.Carrier != (n%2 == 0) {
				t.Errorf("merged transition %+v, want index %d with %d ups, %d downs after %d flaps",
					tr, i+1, n/2, (n+1)/2, n)
			}
		}
		if got := closed.Drain(); len(got) != 0 {
			t.Errorf("closed subscriber received %d transitions after Close", len(got))
		}
		h.w.mu.RLock()
		n := len(h.w.subs)
		h.w.mu.RUnlock()
		if n != 1 {
			t.Errorf("watcher has %d subscribers, want 1", n)
		}
		idle.Close()
		idle.Close() // a second Close is harmless
		h.w.mu.RLock()
		n = len(h.w.subs)
		h.w.mu.RUnlock()
		if n != 0 {
			t.Errorf("watcher has %d subscribers after Close, want 0", n)
		}
	})
}

func TestSnapshotFilterAndLookup(t *testing.T) {
	t.Parallel()
	src := newFakeSource(
		newlinkMsg(t, 1, "lo", true, 0, 0),
		newlinkMsg(t, 2, "eth0", true, 1, 0),
		newlinkMsg(t, 3, "eth1", false, 1, 1),
		newlinkMsg(t, 4, "veth0", true, 1, 0),
	)
	h := start(t, Options{Include: regexp.MustCompile(`^(eth|veth)`), Exclude: regexp.MustCompile(`^eth1$`)}, nil, opened{src: src})
	h.waitStats(t, "the watcher to come up", isUp)

	dst := make([]Link, 1, 8) // Snapshot appends
	links, stats := h.w.Snapshot(dst)
	var names []string
	for _, l := range links[1:] {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"eth0", "veth0"}, names); diff != "" {
		t.Errorf("unexpected exported links (-want +got):\n%s", diff)
	}
	if stats.Links != 4 {
		t.Errorf("Stats.Links = %d, want every link (4)", stats.Links)
	}
	for _, name := range []string{"lo", "eth1", "veth0"} {
		if l, ok := h.w.Lookup(name); !ok || l.Name != name {
			t.Errorf("Lookup(%q) = %+v, %v; want the link", name, l, ok)
		}
	}
	if _, ok := h.w.Lookup("eth9"); ok {
		t.Error("Lookup(eth9) found a link")
	}
}
