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

	"github.com/linkwatch/linkwatch_exporter/netns"
)

// ErrOverrun is wrapped by the error a Source returns from Receive when the
// kernel dropped notifications because the socket's receive buffer was full
// (ENOBUFS). The watcher's state may then be stale and needs a full dump.
var ErrOverrun = errors.New("netlink receive buffer overrun")

// ErrNetNSGone is wrapped by the errors of an Opener and of Liveness.Alive
// when the watched network namespace does not exist (any more): it was
// deleted, its process exited, or its path now names another namespace.
var ErrNetNSGone = netns.ErrGone

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

// Liveness is implemented by a Source whose sockets live in a network
// namespace that can disappear under them. Such a socket keeps the deleted
// namespace alive, with its devices, and receives no error or event, so the
// watcher asks every Options.AliveInterval.
type Liveness interface {
	// Alive returns nil while the namespace the source was opened in is
	// still the one its path names, an error wrapping ErrNetNSGone once it
	// is not, and any other error if it cannot tell. It must be safe to call
	// concurrently with Receive.
	Alive() error
}

// An Opener opens a Source. The watcher calls it again to recover from
// receive errors and, after the watched namespace was lost, to open the
// namespace that replaced it. An Opener's error should wrap ErrNetNSGone
// when the namespace does not exist: the watcher then retries every
// Options.AliveInterval without counting a failure.
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
	// AliveInterval is how often a Source that implements Liveness is
	// checked, and how often the watcher tries to reopen while its
	// namespace is gone (default 1 s).
	AliveInterval time.Duration
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
	// NetNSLost counts the times the watched network namespace was found
	// gone: the watcher then closed the source and dropped every link.
	NetNSLost uint64
	// Links is the number of links known, exported or not.
	Links int
}

// A Watcher keeps the state of every link of one network namespace up to date
// from rtnetlink notifications, and tells subscribers about changes.
type Watcher struct {
	open       Opener
	now        func() time.Time
	logger     *slog.Logger
	minBO      time.Duration
	maxBO      time.Duration
	aliveEvery time.Duration

	// lost is true from the loss of the watched namespace until a source
	// is served again; only Run's goroutine uses it.
	lost bool

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
	if o.AliveInterval <= 0 {
		o.AliveInterval = time.Second
	}
	return &Watcher{
		open: open, now: o.Now, logger: o.Logger, minBO: o.MinBackoff, maxBO: o.MaxBackoff,
		aliveEvery: o.AliveInterval, ready: make(chan struct{}),
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
//
// A source that implements Liveness is checked every AliveInterval. Once its
// namespace is gone, Run closes the source, which releases the namespace,
// drops every link (subscribers get a Deleted transition for each) and
// tries every AliveInterval to open the namespace that takes its path.
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
			var wait time.Duration
			if errors.Is(err, ErrNetNSGone) {
				if !w.lost {
					w.lose(err)
					backoff = w.minBO
				} else {
					w.logger.Debug("watched network namespace still gone", "err", err)
				}
				wait = w.aliveEvery
			} else {
				w.countError()
				w.logger.Warn("netlink link watch failed, reopening", "err", err, "retry_in", backoff)
				wait = backoff
				backoff = min(2*backoff, w.maxBO)
			}
			if !sleep(ctx, wait) {
				return nil
			}
			if src, err = w.open(); err == nil {
				break
			}
		}
	}
}

// lose drops the state of a namespace that is gone: every link is deleted,
// as it is in the kernel once the namespace is freed.
func (w *Watcher) lose(err error) {
	w.lost = true
	now := w.now()
	w.mu.Lock()
	w.stats.Up = false
	w.stats.NetNSLost++
	n := len(w.table.links)
	w.table.clear(now, w.publishLocked)
	w.mu.Unlock()
	w.logger.Warn("watched network namespace is gone: closed its sockets to release it and dropped its links; waiting for a namespace at its path",
		"err", err, "links_dropped", n, "check_interval", w.aliveEvery)
}

// serve dumps and then receives from src until an error or cancellation. It
// always closes src. If src implements Liveness and its namespace is found
// gone, serve closes src to stop Receive and returns Alive's error.
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
	if w.lost {
		w.lost = false
		w.mu.RLock()
		n := len(w.table.links)
		w.mu.RUnlock()
		w.logger.Info("a network namespace is back at the watched path: opened it and dumped its links", "links", n)
	}
	gone := w.monitor(src)
	defer gone()
	for {
		msgs, err := src.Receive()
		if err != nil {
			if gerr := gone(); gerr != nil {
				return gerr
			}
		}
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

// monitor checks every AliveInterval, if src implements Liveness, whether
// its namespace is still there, and closes src once it is not. The returned
// function stops the checks and returns the error that made monitor close
// src, or nil.
func (w *Watcher) monitor(src Source) (stop func() error) {
	lv, ok := src.(Liveness)
	if !ok {
		return func() error { return nil }
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	var gone error // written before exited is closed
	go func() {
		defer close(exited)
		t := time.NewTicker(w.aliveEvery)
		defer t.Stop()
		var lastErr string // of failed checks, logged when it changes
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := lv.Alive()
			switch {
			case errors.Is(err, ErrNetNSGone):
				gone = err
				_ = src.Close()
				return
			case err != nil && err.Error() != lastErr:
				w.logger.Warn("cannot check whether the watched network namespace still exists; assuming it does", "err", err)
				lastErr = err.Error()
			case err == nil:
				lastErr = ""
			}
		}
	}()
	var once sync.Once
	return func() error {
		once.Do(func() { close(done) })
		<-exited
		return gone
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
