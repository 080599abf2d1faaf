package session

import "sync/atomic"

// queue is a FIFO ring of deliveries that grows on demand (so an idle
// session costs no queue memory) up to the session's message limit.
type queue struct {
	buf   []Delivery
	head  int
	n     int
	bytes int
	quota *Quota // shared with the other sessions of the tenant; nil for none
	// expiring counts queued messages with an expiry, so that a sweep
	// skips queues where nothing can expire.
	expiring int
}

func (q *queue) len() int { return q.n }

func (q *queue) push(d Delivery) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = d
	q.n++
	q.bytes += d.Msg.Size()
	if !d.Msg.Expiry.IsZero() {
		q.expiring++
	}
	if q.quota != nil {
		q.quota.add(1, d.Msg.Size())
	}
}

func (q *queue) grow() {
	size := 2 * len(q.buf)
	if size < 8 {
		size = 8
	}
	nb := make([]Delivery, size)
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf = nb
	q.head = 0
}

func (q *queue) peek() *Delivery {
	if q.n == 0 {
		return nil
	}
	return &q.buf[q.head]
}

func (q *queue) pop() Delivery {
	d := q.buf[q.head]
	q.buf[q.head] = Delivery{} // release the message for the collector
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.bytes -= d.Msg.Size()
	if !d.Msg.Expiry.IsZero() {
		q.expiring--
	}
	if q.quota != nil {
		q.quota.add(-1, -d.Msg.Size())
	}
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 4096 {
			// A drained large burst gives its memory back; smaller buffers
			// stay, so a queue that keeps filling and draining does not
			// regrow each time.
			q.buf = nil
		}
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
