package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
)

// ErrOverrun is wrapped by the error a Source returns from Receive when the
// kernel dropped notifications because the socket's receive buffer was full
// (ENOBUFS). The watcher's state may then be stale and needs a full dump.
var ErrOverrun = errors.New("netlink receive buffer overrun")

// A Source is where link messages come from: rtnetlink sockets in
// production, a fake in tests.
type Source interface {
	// Receive blocks until link notifications arrive. It returns an error
	// wrapping ErrOverrun if notifications were lost.
	Receive() ([]netlink.Message, error)
	// Dump returns the RTM_NEWLINK messages of a full link dump.
	Dump() ([]netlink.Message, error)
	// Close releases the source and unblocks Receive.
	Close() error
}

// An Opener opens a Source. The watcher calls it again to recover from
// receive errors.
type Opener func() (Source, error)

// Options configure a Watcher.
type Options struct {
	// Buckets are the upper bounds, in seconds and ascending, of the carrier
	// period duration histograms.
	Buckets []float64
	// NativeHistograms also records the durations in native histogram
	// buckets.
	NativeHistograms bool
	// Include and Exclude choose by name the links Snapshot returns; nil
	// means no restriction. Lookup and subscribers see every link.
	Include, Exclude *regexp.Regexp
	// Now is the clock. Durations are measured with its monotonic reading.
	Now func() time.Time
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before reopening the source
	// after a receive error (defaults 100 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
}

// Stats are the watcher's own counters and health.
type Stats struct {
	// Up is true while the event socket is open and healthy.
	Up bool
	// NewLink, DelLink and Other count received notifications by type.
	NewLink, DelLink, Other uint64
	// Overruns counts receive buffer overruns (ENOBUFS), Resyncs the full
	// dumps made after start-up (after overruns and reconnects).
	Overruns, Resyncs uint64
	// DecodeErrors counts messages that could not be decoded and were
	// skipped, ReceiveErrors other receive or reopen failures.
	DecodeErrors, ReceiveErrors uint64
	// Links is the number of links known, exported or not.
	Links int
}

// A Watcher keeps the state of every link of one network namespace up to date
// from rtnetlink notifications, and tells subscribers about changes.
type Watcher struct {
	open   Opener
	now    func() time.Time
	logger *slog.Logger
	minBO  time.Duration
	maxBO  time.Duration

	ready     chan struct{}
	readyOnce sync.Once

	mu    sync.RWMutex
	table *table
	stats Stats
	dumps uint64
	subs  []*Subscription
}

// New returns a Watcher that reads from sources opened by open. Call Run to
// start it.
func New(open Opener, o Options) *Watcher {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 30 * time.Second
	}
	return &Watcher{
		open: open, now: o.Now, logger: o.Logger, minBO: o.MinBackoff, maxBO: o.MaxBackoff,
		ready: make(chan struct{}),
		table: newTable(o.Buckets, o.NativeHistograms, filter{include: o.Include, exclude: o.Exclude}),
	}
}

// Run opens the source, seeds the state with a full dump and then applies
// notifications until ctx is canceled, when it returns nil. An error opening
// the first source is returned at once. After an overrun the source is
// reopened and dumped again at once: notifications still queued on the old
// socket are older than the new dump and are dropped with it. Other receive
// errors are counted and logged, and the source is reopened with backoff, so
// Run never gives up while ctx lives.
func (w *Watcher) Run(ctx context.Context) error {
	src, err := w.open()
	if err != nil {
		return fmt.Errorf("watcher: %w", err)
	}
	backoff := w.minBO
	for {
		started := w.now()
		err := w.serve(ctx, src)
		if ctx.Err() != nil {
			w.setUp(false)
			return nil
		}
		if errors.Is(err, ErrOverrun) {
			if src, err = w.open(); err == nil {
				continue
			}
		}
		w.setUp(false)
		if w.now().Sub(started) > time.Minute {
			backoff = w.minBO
		}
		for {
			w.countError()
			w.logger.Warn("netlink link watch failed, reopening", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, w.maxBO)
			if src, err = w.open(); err == nil {
				break
			}
		}
	}
}

// serve dumps and then receives from src until an error or cancellation. It
// always closes src.
func (w *Watcher) serve(ctx context.Context, src Source) error {
	stop := context.AfterFunc(ctx, func() { _ = src.Close() })
	defer func() {
		if stop() {
			_ = src.Close()
		}
	}()
	if err := w.resync(src); err != nil {
		return fmt.Errorf("link dump: %w", err)
	}
	w.setUp(true)
	for {
		msgs, err := src.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrOverrun):
			w.mu.Lock()
			w.stats.Overruns++
			w.mu.Unlock()
			w.logger.Warn("netlink receive buffer overrun, notifications were lost; resyncing with a full dump",
				"hint", "raise --watcher.read-buffer")
			return err
		case err != nil:
			return fmt.Errorf("receive: %w", err)
		default:
			w.applyBatch(msgs)
		}
	}
}

// resync applies a full dump and removes the links it does not mention.
func (w *Watcher) resync(src Source) error {
	msgs, err := src.Dump()
	if err != nil {
		return err
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dumps > 0 {
		w.stats.Resyncs++
	}
	w.dumps++
	w.table.beginResync()
	var u update
	for _, m := range msgs {
		if m.Header.Type != rtmNewLink {
			continue
		}
		w.applyLocked(m, &u, now, false)
	}
	w.table.endResync(now, w.publishLocked)
	w.readyOnce.Do(func() { close(w.ready) })
	return nil
}

// Ready returns a channel that is closed once the first full dump has been
// applied, so that Lookup and Snapshot describe every link.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// applyBatch applies one batch of notifications, all stamped with one
// receive time.
func (w *Watcher) applyBatch(msgs []netlink.Message) {
	now := w.now()
	var u update
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		switch m.Header.Type {
		case rtmNewLink:
			w.stats.NewLink++
		case rtmDelLink:
			w.stats.DelLink++
		default:
			w.stats.Other++
			continue
		}
		w.applyLocked(m, &u, now, true)
	}
}

func (w *Watcher) applyLocked(m netlink.Message, u *update, now time.Time, exact bool) {
	if err := decodeLink(uint16(m.Header.Type), m.Data, u); err != nil {
		w.stats.DecodeErrors++
		return
	}
	if tr, ok := w.table.apply(u, now, exact); ok {
		w.publishLocked(tr)
	}
}

func (w *Watcher) setUp(up bool) {
	w.mu.Lock()
	w.stats.Up = up
	w.mu.Unlock()
}

func (w *Watcher) countError() {
	w.mu.Lock()
	w.stats.ReceiveErrors++
	w.mu.Unlock()
}

// Snapshot appends a copy of every exported link to dst and returns it with
// the watcher's stats, both taken at one instant.
func (w *Watcher) Snapshot(dst []Link) ([]Link, Stats) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	s := w.stats
	s.Links = len(w.table.links)
	return w.table.snapshot(dst), s
}

// Lookup returns the state of the link with the given name, whether or not
// it is exported.
func (w *Watcher) Lookup(name string) (Link, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.table.lookup(name)
}

// LookupIndex returns the state of the link with the given ifindex, whether
// or not it is exported.
func (w *Watcher) LookupIndex(index int32) (Link, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	l := w.table.links[index]
	if l == nil {
		return Link{}, false
	}
	return w.table.copyOf(l), true
}

// sleep waits for d or until ctx is canceled, and reports whether it waited
// the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
