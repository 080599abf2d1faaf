package cluster

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestInboxBounds: an inbox takes messages until it holds its bound in
// messages or in bytes, drops and counts the rest (one overflow per run
// of refusals), takes a message larger than its byte bound only when
// empty, keeps the messages counted until the dispatcher is done with
// them, and hands them over in order.
func TestInboxBounds(t *testing.T) {
	m := func(size int) *nats.Msg { return &nats.Msg{Subject: "s", Data: []byte(strings.Repeat("x", size-1))} }
	tests := []struct {
		name            string
		maxMsgs, bytes  int
		sizes           []int
		want            []bool
		dropped, overfl uint64
	}{
		{"count bound", 2, 1 << 20, []int{10, 10, 10, 10}, []bool{true, true, false, false}, 2, 1},
		{"byte bound", 100, 25, []int{10, 10, 10, 5}, []bool{true, true, false, true}, 1, 1},
		{"larger than the bound, empty inbox", 100, 25, []int{40, 1}, []bool{true, false}, 1, 1},
		{"larger than the bound, after another", 100, 25, []int{1, 40}, []bool{true, false}, 1, 1},
		{"refusals in a row: one overflow", 100, 20, []int{10, 10, 10, 1, 10}, []bool{true, true, false, false, false}, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := newInbox(tc.maxMsgs, tc.bytes)
			for i, size := range tc.sizes {
				if got := in.push(m(size)); got != tc.want[i] {
					t.Fatalf("push %d (%d bytes): %v, want %v", i, size, got, tc.want[i])
				}
			}
			if d, o := in.dropped.Load(), in.overflows.Load(); d != tc.dropped || o != tc.overfl {
				t.Fatalf("dropped %d, overflows %d; want %d, %d", d, o, tc.dropped, tc.overfl)
			}
			_, bytes := in.held()
			if bytes > tc.bytes && len(tc.sizes) > 0 && tc.sizes[0] <= tc.bytes {
				t.Fatalf("holds %d bytes, bound %d", bytes, tc.bytes)
			}
		})
	}

	// Taken messages stay counted until done; the inbox then takes more.
	in := newInbox(2, 1<<20)
	a, b := m(5), m(7)
	in.push(a)
	in.push(b)
	batch := in.take()
	if len(batch) != 2 || batch[0] != a || batch[1] != b {
		t.Fatalf("batch %v, want a then b", batch)
	}
	if in.push(m(1)) {
		t.Fatal("took a message while two taken ones were not done")
	}
	in.done(a)
	if msgs, bytes := in.held(); msgs != 1 || bytes != 7 {
		t.Fatalf("holds %d messages, %d bytes after one done; want 1, 7", msgs, bytes)
	}
	if !in.push(m(1)) {
		t.Fatal("refused a message with room for it")
	}
	in.done(b)
	// After close: what waits, then nil; nothing more is taken.
	in.close()
	if in.push(m(1)) {
		t.Fatal("took a message after close")
	}
	if batch := in.take(); len(batch) != 1 {
		t.Fatalf("after close: %d waiting, want 1", len(batch))
	}
	if batch := in.take(); batch != nil {
		t.Fatalf("closed and empty: %v", batch)
	}
}
