package session

import (
	"math/rand/v2"
	"testing"
)

// TestQueueFIFOAcrossSegments pushes and pops in random runs across the
// segment boundaries (16, 32, ... 256 slots) and checks order, length and
// byte count against a plain slice; a drained queue keeps at most one
// small segment.
func TestQueueFIFOAcrossSegments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q queue
	var ref []int
	msgs := make([]*Message, 5000)
	for i := range msgs {
		msgs[i] = &Message{Topic: "t", Payload: make([]byte, i%7)}
	}
	next, bytes := 0, 0
	for round := 0; round < 400; round++ {
		for range rng.IntN(700) {
			if next == len(msgs) {
				next = 0
			}
			q.push(Delivery{Msg: msgs[next], Seq: uint64(next)})
			ref = append(ref, next)
			bytes += msgs[next].Size()
			next++
		}
		pops := rng.IntN(len(ref) + 1)
		if round%10 == 0 {
			pops = len(ref) // drain now and then
		}
		for range pops {
			if p := q.peek(); p == nil || int(p.Seq) != ref[0] {
				t.Fatalf("round %d: peek %v, want seq %d", round, p, ref[0])
			}
			d := q.pop()
			if int(d.Seq) != ref[0] {
				t.Fatalf("round %d: popped seq %d, want %d", round, d.Seq, ref[0])
			}
			bytes -= d.Msg.Size()
			ref = ref[1:]
		}
		if q.len() != len(ref) || q.bytes != bytes {
			t.Fatalf("round %d: len %d bytes %d, want %d and %d", round, q.len(), q.bytes, len(ref), bytes)
		}
		if q.len() == 0 {
			if q.peek() != nil {
				t.Fatal("peek on an empty queue")
			}
			if q.head != q.tail || (q.head != nil && (len(q.head.buf) > segKeep || q.head.next != nil)) {
				t.Fatalf("round %d: drained queue holds more than one small segment", round)
			}
		}
	}
}
