package watcher

import "sync"

// A Subscription receives the watcher's transitions without ever slowing the
// watcher down: transitions wait in a mailbox that keeps one merged entry per
// link, so a slow reader loses no state and no flap count, and the mailbox
// never grows beyond the number of links.
type Subscription struct {
	w       *Watcher
	c       chan struct{}
	mu      sync.Mutex
	pending map[int32]Transition
	order   []int32
}

// Subscribe returns a new Subscription. Close it when done.
func (w *Watcher) Subscribe() *Subscription {
	s := &Subscription{w: w, c: make(chan struct{}, 1), pending: make(map[int32]Transition)}
	w.mu.Lock()
	w.subs = append(w.subs, s)
	w.mu.Unlock()
	return s
}

// C returns a channel that receives a value when transitions are waiting.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Drain returns the waiting transitions, oldest link first, and empties the
// mailbox.
func (s *Subscription) Drain() []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Transition, 0, len(s.order))
	for _, i := range s.order {
		out = append(out, s.pending[i])
	}
	clear(s.pending)
	s.order = s.order[:0]
	return out
}

// Close stops the subscription.
func (s *Subscription) Close() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	for i, x := range s.w.subs {
		if x == s {
			s.w.subs = append(s.w.subs[:i], s.w.subs[i+1:]...)
			break
		}
	}
}

func (s *Subscription) put(tr Transition) {
	s.mu.Lock()
	if old, ok := s.pending[tr.Index]; ok {
		tr.CarrierUps += old.CarrierUps
		tr.CarrierDowns += old.CarrierDowns
	} else {
		s.order = append(s.order, tr.Index)
	}
	s.pending[tr.Index] = tr
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// publishLocked hands tr to every subscriber; w.mu must be held.
func (w *Watcher) publishLocked(tr Transition) {
	for _, s := range w.subs {
		s.put(tr)
	}
}
