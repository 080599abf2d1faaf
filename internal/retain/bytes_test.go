package retain

import "testing"

type sized string

func (s sized) Size() int { return len(s) }

// TestIndexBytes checks that Bytes follows Set (new and replaced values)
// and Delete, so the broker's retained-bytes figure never drifts.
func TestIndexBytes(t *testing.T) {
	x := New[sized]()
	steps := []struct {
		op    string
		topic string
		v     sized
		want  int
	}{
		{"set", "a/b", "12345", 5},
		{"set", "a/c", "123", 8},
		{"set", "a/b", "1", 4},      // replaced: 5 out, 1 in
		{"del", "a/x", "", 4},       // absent: nothing changes
		{"del", "a/b", "", 3},       // removed
		{"set", "a/b/c/d", "12", 5}, // deeper
		{"del", "a/c", "", 2},       // prunes nothing below
		{"del", "a/b/c/d", "", 0},   // prunes the branch
	}
	for i, s := range steps {
		if s.op == "set" {
			x.Set(s.topic, s.v)
		} else {
			x.Delete(s.topic)
		}
		if got := x.Bytes(); got != s.want {
			t.Fatalf("step %d (%s %s): Bytes = %d, want %d", i, s.op, s.topic, got, s.want)
		}
	}
	// Values without a Size count nothing.
	y := New[int]()
	y.Set("a", 7)
	if y.Bytes() != 0 {
		t.Fatalf("Bytes of sizeless values = %d, want 0", y.Bytes())
	}
}
