package linkmsg

import (
	"errors"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
)

// rtmNewLink is RTM_NEWLINK.
const rtmNewLink = 16

// Veths returns messages for n veth pairs named vA<i> and vB<i>, with
// ifindexes from 2 up, as a namespace holding them would dump them.
func Veths(n int) []*Msg {
	out := make([]*Msg, 0, 2*n)
	for i := range n {
		out = append(out,
			New(int32(2+2*i), fmt.Sprintf("vA%d", i)),
			New(int32(3+2*i), fmt.Sprintf("vB%d", i)))
	}
	return out
}

// Message wraps a message body as an RTM_NEWLINK netlink message.
func Message(body []byte) netlink.Message {
	return netlink.Message{Header: netlink.Header{Type: rtmNewLink}, Data: body}
}

// ErrClosed is returned by Receive once the Source is closed.
var ErrClosed = errors.New("linkmsg: source closed")

// A Source implements the watcher's Source interface (Receive, Dump, Close)
// for benchmarks: Dump returns fixed messages, Receive what Send hands it.
type Source struct {
	dump    []netlink.Message
	batches chan []netlink.Message
	closed  chan struct{}
	once    sync.Once
}

// NewSource returns a Source whose Dump returns msgs.
func NewSource(msgs []*Msg) *Source {
	s := &Source{batches: make(chan []netlink.Message), closed: make(chan struct{})}
	for _, m := range msgs {
		s.dump = append(s.dump, Message(m.Data))
	}
	return s
}

// Dump returns the messages given to NewSource.
func (s *Source) Dump() ([]netlink.Message, error) { return s.dump, nil }

// Receive returns the next batch given to Send.
func (s *Source) Receive() ([]netlink.Message, error) {
	select {
	case b := <-s.batches:
		return b, nil
	case <-s.closed:
		return nil, ErrClosed
	}
}

// Send hands one batch to Receive and returns once Receive took it. The
// watcher applies a batch before it receives the next, so Send also means
// that every earlier batch has been applied; Sync relies on that.
func (s *Source) Send(msgs ...netlink.Message) error {
	select {
	case s.batches <- msgs:
		return nil
	case <-s.closed:
		return ErrClosed
	}
}

// Sync returns once every batch sent before it has been applied.
func (s *Source) Sync() error { return s.Send() }

// Close unblocks Receive.
func (s *Source) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
