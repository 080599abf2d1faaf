package session

// queue is a FIFO ring of deliveries that grows on demand (so an idle
// session costs no queue memory) up to the session's message limit.
type queue struct {
	buf   []Delivery
	head  int
	n     int
	bytes int
}

func (q *queue) len() int { return q.n }

func (q *queue) push(d Delivery) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = d
	q.n++
	q.bytes += d.Msg.Size()
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
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 1024 {
			q.buf = nil // a drained burst gives its memory back
		}
	}
	return d
}

// reset empties the queue and returns what was in it.
func (q *queue) reset() {
	*q = queue{}
}
