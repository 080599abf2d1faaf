package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// handoffLen is the capacity of the channel nats.go delivers a kind of
// subscription (plain, share) into. The node's pump for it moves each
// message into the kind's inbox at once (a lock and an append, less work
// than nats.go's reader spends on a message), so the channel stays near
// empty; it is the only place a message waits uncounted by the inbox's
// byte bound. When it is full, nats.go drops (Counters.SlowConsumer,
// InboxDropped).
const handoffLen = 1024

// inbox holds the messages of one kind of subscription between the pump
// and the dispatcher, in arrival order, bounded in messages and in bytes:
// nats.go's channel subscriptions have a bound in messages only, which
// with 64 MiB messages would let other nodes make this node hold
// terabytes. A message counts from push until the dispatcher is done
// with it (done), so the bound covers the messages in the dispatcher's
// hands too.
type inbox struct {
	maxMsgs  int
	maxBytes int
	// ready holds a token while messages wait (or the inbox closed).
	ready chan struct{}

	mu struct {
		sync.Mutex
		q      []*nats.Msg // waiting, oldest first
		spare  []*nats.Msg // the dispatcher's last batch, reused
		msgs   int         // waiting and in the dispatcher's hands
		bytes  int         // their sizes
		full   bool        // the last push was refused
		closed bool
	}
	dropped   atomic.Uint64 // messages refused
	overflows atomic.Uint64 // times the inbox went from taking to refusing
}

func newInbox(maxMsgs, maxBytes int) *inbox {
	return &inbox{maxMsgs: maxMsgs, maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

// msgSize is what a message from NATS holds in memory, near enough.
func msgSize(m *nats.Msg) int {
	return len(m.Subject) + len(m.Reply) + len(m.Data)
}

// push queues m, or drops and counts it when the inbox holds maxMsgs
// messages or m would take it past maxBytes (a message larger than
// maxBytes is taken only into an empty inbox). It never blocks.
func (b *inbox) push(m *nats.Msg) bool {
	size := msgSize(m)
	b.mu.Lock()
	if b.mu.closed {
		b.mu.Unlock()
		return false
	}
	if b.mu.msgs >= b.maxMsgs || (b.mu.msgs > 0 && b.mu.bytes+size > b.maxBytes) {
		if !b.mu.full {
			b.mu.full = true
			b.overflows.Add(1)
		}
		b.mu.Unlock()
		b.dropped.Add(1)
		return false
	}
	b.mu.full = false
	b.mu.q = append(b.mu.q, m)
	b.mu.msgs++
	b.mu.bytes += size
	b.mu.Unlock()
	b.signal()
	return true
}

func (b *inbox) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take returns the waiting messages, oldest first, waiting for one when
// none does; it returns nil once the inbox is closed and empty. They stay
// counted until done. Only the dispatcher calls it, and the returned
// slice is reused by its next call.
func (b *inbox) take() []*nats.Msg {
	for {
		b.mu.Lock()
		if len(b.mu.q) > 0 {
			batch := b.mu.q
			b.mu.q = b.mu.spare[:0]
			b.mu.spare = batch
			b.mu.Unlock()
			return batch
		}
		closed := b.mu.closed
		b.mu.Unlock()
		if closed {
			return nil
		}
		<-b.ready
	}
}

// done releases a message take returned.
func (b *inbox) done(m *nats.Msg) {
	b.mu.Lock()
	b.mu.msgs--
	b.mu.bytes -= msgSize(m)
	b.mu.Unlock()
}

// close refuses further messages; take returns what waits, then nil.
func (b *inbox) close() {
	b.mu.Lock()
	b.mu.closed = true
	b.mu.Unlock()
	b.signal()
}

// held returns the messages and bytes the inbox holds (waiting and in
// the dispatcher's hands).
func (b *inbox) held() (msgs, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.msgs, b.mu.bytes
}

// pump moves the messages nats.go puts on ch into in until the node
// stops, then what is left on ch, and closes in.
func (n *Node) pump(ch chan *nats.Msg, in *inbox) {
	defer n.wg.Done()
	defer in.close()
	for {
		select {
		case m := <-ch:
			if !in.push(m) {
				n.logDrop(&n.count.lastInboxFull, "cluster: inbox full, messages from other nodes dropped", "bound_bytes", in.maxBytes, "bound_messages", in.maxMsgs)
			}
		case <-n.ctx.Done():
			for {
				select {
				case m := <-ch:
					in.push(m)
				default:
					return
				}
			}
		}
	}
}

// dispatch hands the messages of in to deliver, in order, until in is
// closed and empty.
func (n *Node) dispatch(in *inbox, deliver func(*nats.Msg)) {
	defer n.wg.Done()
	for {
		batch := in.take()
		if batch == nil {
			return
		}
		for i, m := range batch {
			deliver(m)
			in.done(m)
			batch[i] = nil
		}
	}
}
