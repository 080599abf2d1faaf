package session

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// queue is a FIFO of deliveries in a chain of segments: pushing never
// copies what is queued (a ring would copy it all at each doubling, with a
// GC write barrier per pointer), and a drained segment goes back to a pool
// for the next burst of any session. An idle session holds no segment; a
// few queued messages hold one small segment.
type queue struct {
	head, tail *segment
	n          int
	bytes      int
	quota      *Quota  // shared with the other sessions of the tenant; nil for none
	budget     *Budget // shared with every session of the broker; nil for none
	stripe     int     // the budget's stripe this queue charges
	// expiring counts queued messages with an expiry, so that a sweep
	// skips queues where nothing can expire.
	expiring int
}

// segment holds deliveries buf[r:w].
type segment struct {
	buf  []Delivery
	r, w int
	next *segment
}

// Segment sizes: 16 x 80 B deliveries first, doubling up to 256 (20 KiB).
const (
	segMin = 16
	segMax = 256
	// segKeep is the largest segment an emptied queue keeps.
	segKeep = 32
)

// segPools holds free segments by size class (segMin << i).
var segPools [5]sync.Pool

func segClass(size int) int { return bits.Len(uint(size/segMin)) - 1 }

func getSegment(size int) *segment {
	if s, ok := segPools[segClass(size)].Get().(*segment); ok {
		return s
	}
	return &segment{buf: make([]Delivery, size)}
}

// putSegment returns an emptied segment (its slots already cleared by pop).
func putSegment(s *segment) {
	s.r, s.w, s.next = 0, 0, nil
	segPools[segClass(len(s.buf))].Put(s)
}

func (q *queue) len() int { return q.n }

func (q *queue) push(d Delivery) {
	t := q.tail
	if t == nil || t.w == len(t.buf) {
		size := segMin // doubling up to segMax: pooled, so a burst allocates nothing in steady state
		if t != nil {
			size = min(2*len(t.buf), segMax)
		}
		s := getSegment(size)
		if t == nil {
			q.head = s
		} else {
			t.next = s
		}
		q.tail, t = s, s
	}
	t.buf[t.w] = d
	t.w++
	q.n++
	q.bytes += d.Msg.Size()
	if !d.Msg.Expiry.IsZero() {
		q.expiring++
	}
	if q.quota != nil {
		q.quota.add(1, d.Msg.Size())
	}
	if q.budget != nil {
		q.budget.Charge(q.stripe, d.Msg.Size())
	}
}

// emptied returns an empty queue charging the same quota and budget.
func (q *queue) emptied() queue { return queue{quota: q.quota, budget: q.budget, stripe: q.stripe} }

func (q *queue) peek() *Delivery {
	if q.n == 0 {
		return nil
	}
	return &q.head.buf[q.head.r]
}

func (q *queue) pop() Delivery {
	h := q.head
	d := h.buf[h.r]
	h.buf[h.r] = Delivery{} // release the message for the collector
	h.r++
	q.n--
	q.bytes -= d.Msg.Size()
	if !d.Msg.Expiry.IsZero() {
		q.expiring--
	}
	if q.quota != nil {
		q.quota.add(-1, -d.Msg.Size())
	}
	if q.budget != nil {
		q.budget.Charge(q.stripe, -d.Msg.Size())
	}
	switch {
	case h.r < h.w:
	case h.next != nil: // the next segment holds the rest
		q.head = h.next
		putSegment(h)
	case len(h.buf) <= segKeep: // drained: a small segment stays for the next message
		h.r, h.w = 0, 0
	default: // drained after a burst: the memory goes back to the pool
		q.head, q.tail = nil, nil
		putSegment(h)
	}
	return d
}

// Quota bounds the messages queued by a group of sessions, a tenant's:
// every queue sharing it counts against MaxMessages and MaxBytes (0: no
// bound of that kind). Safe for concurrent use.
type Quota struct {
	MaxMessages int64
	MaxBytes    int64
	messages    atomic.Int64
	bytes       atomic.Int64
}

func (q *Quota) add(n, size int) {
	q.messages.Add(int64(n))
	q.bytes.Add(int64(size))
}

// full reports whether one more message of size bytes would exceed q.
func (q *Quota) full(size int) bool {
	if q.MaxMessages > 0 && q.messages.Load() >= q.MaxMessages {
		return true
	}
	return q.MaxBytes > 0 && q.bytes.Load()+int64(size) > q.MaxBytes
}

// Queued returns the messages and bytes queued under q.
func (q *Quota) Queued() (messages, bytes int64) { return q.messages.Load(), q.bytes.Load() }
