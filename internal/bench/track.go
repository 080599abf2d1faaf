package bench

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"time"
)

// payloadHeader is the number of payload bytes the load generator stamps:
// run id (2), publisher id (2), sequence number (4), send time (8).
const payloadHeader = 16

// clock gives monotonic nanoseconds since the process's bench clock started;
// publisher and subscriber share it, so payload timestamps need no wall clock.
type clock struct{ base time.Time }

func newClock() clock { return clock{base: time.Now()} }

func (c clock) now() int64 { return int64(time.Since(c.base)) }

// stamp writes the header into payload, which is at least payloadHeader long.
func stamp(payload []byte, run, pub uint16, seq uint32, now int64) {
	binary.BigEndian.PutUint16(payload[0:], run)
	binary.BigEndian.PutUint16(payload[2:], pub)
	binary.BigEndian.PutUint32(payload[4:], seq)
	binary.BigEndian.PutUint64(payload[8:], uint64(now))
}

// stream is what one subscriber saw of one publisher.
type stream struct {
	seen []uint64 // bit seq set: seq received
	next uint32   // highest sequence received + 1
	n    uint32   // unique messages received
}

// tracker counts what one subscriber receives: unique messages by
// (publisher, sequence), duplicates, messages arriving after a later one of
// the same publisher, and their latency. It is owned by one goroutine;
// received and last are read by others while it runs.
type tracker struct {
	run     uint16
	clock   clock
	streams []stream
	hist    histogram

	received atomic.Int64 // unique messages
	last     atomic.Int64 // clock time of the last unique message
	dups     int64
	ooo      int64
	foreign  int64 // payloads not from this run
}

func newTracker(run uint16, c clock) *tracker {
	return &tracker{run: run, clock: c}
}

// record accounts for one received payload at time now.
func (t *tracker) record(payload []byte, now int64) {
	if len(payload) < payloadHeader || binary.BigEndian.Uint16(payload) != t.run {
		t.foreign++
		return
	}
	pub := int(binary.BigEndian.Uint16(payload[2:]))
	seq := binary.BigEndian.Uint32(payload[4:])
	sent := int64(binary.BigEndian.Uint64(payload[8:]))
	for pub >= len(t.streams) {
		t.streams = append(t.streams, stream{})
	}
	s := &t.streams[pub]
	w := int(seq / 64)
	for w >= len(s.seen) {
		s.seen = append(s.seen, 0)
	}
	bit := uint64(1) << (seq % 64)
	if s.seen[w]&bit != 0 {
		t.dups++
		return
	}
	s.seen[w] |= bit
	s.n++
	if seq+1 < s.next {
		t.ooo++
	} else {
		s.next = seq + 1
	}
	t.hist.record(now - sent)
	t.received.Add(1)
	t.last.Store(now)
}

// gaps returns the messages missing below the highest sequence received
// from each publisher: lost for sure when a publisher's messages arrive in
// order.
func (t *tracker) gaps() (n int64) {
	for i := range t.streams {
		n += int64(t.streams[i].next - t.streams[i].n)
	}
	return n
}

// histogram is a log-linear latency histogram in nanoseconds: 128
// sub-buckets per power of two, so a percentile is within 0.8% of the value.
type histogram struct {
	counts [histBuckets]int64
	n      int64
	max    int64
	sum    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	i := (e+1)*histSub + int(v>>e) - histSub
	if i >= histBuckets {
		i = histBuckets - 1
	}
	return i
}

// histLow returns the smallest value of bucket i and the bucket's width.
func histLow(i int) (low, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	e := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return m << e, 1 << e
}

func (h *histogram) record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(uint64(v))]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1) in nanoseconds, the middle
// of its bucket, never more than the maximum.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(q * float64(h.n))
	if rank < 1 {
		rank = 1
	}
	var cum int64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			low, width := histLow(i)
			return min(int64(low+width/2), h.max)
		}
	}
	return h.max
}
