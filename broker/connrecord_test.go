package broker

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

// TestFinishedChan: a channel asked for before the connection finished is
// closed when it does; one asked for after is closed already; a
// connection nobody waits for makes none.
func TestFinishedChan(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	c := &conn{}
	ch := c.finishedChan()
	if closed(ch) {
		t.Fatal("closed before the connection finished")
	}
	if c.finishedChan() != ch {
		t.Fatal("a second waiter got another channel")
	}
	c.markFinished()
	if !closed(ch) {
		t.Fatal("not closed after the connection finished")
	}

	c = &conn{}
	c.markFinished()
	if c.mu.finished != nil {
		t.Fatal("a channel made with no waiter")
	}
	if !closed(c.finishedChan()) {
		t.Fatal("a waiter after the finish got an open channel")
	}
}

// TestConnList: connections are added at the head, removed from anywhere
// (a second remove changes nothing), and the links back stay right.
func TestConnList(t *testing.T) {
	var l connList
	cs := []*conn{{}, {}, {}, {}}
	for _, c := range cs {
		l.add(c)
	}
	list := func() []*conn {
		var got []*conn
		for c := l.head; c != nil; c = c.lnext {
			got = append(got, c)
		}
		return got
	}
	same := func(want ...*conn) {
		t.Helper()
		got := list()
		if len(got) != len(want) {
			t.Fatalf("list has %d, want %d", len(got), len(want))
		}
		for i, c := range got {
			if i > 0 && c.lprev != got[i-1] || i == 0 && c.lprev != nil {
				t.Fatalf("entry %d's previous link is wrong", i)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("entry %d is not the connection expected", i)
			}
		}
	}
	same(cs[3], cs[2], cs[1], cs[0])
	l.remove(cs[2]) // middle
	same(cs[3], cs[1], cs[0])
	l.remove(cs[3]) // head
	same(cs[1], cs[0])
	l.remove(cs[0]) // tail
	same(cs[1])
	l.remove(cs[0]) // again: nothing changes
	same(cs[1])
	l.remove(cs[1])
	same()
	l.add(cs[2])
	same(cs[2])
}

// TestIsErr: isErr answers as errors.Is does, wrapped errors included,
// with the peer's close matching only itself.
func TestIsErr(t *testing.T) {
	wrapped := fmt.Errorf("read: %w", errParked)
	cases := []struct {
		err, target error
		want        bool
	}{
		{errParked, errParked, true},
		{wrapped, errParked, true},
		{io.EOF, errParked, false},
		{io.EOF, io.EOF, true},
		{nil, errParked, false},
		{errHandOff, errParked, false},
		{fmt.Errorf("x: %w", io.EOF), io.EOF, true},
	}
	for _, tc := range cases {
		if got := isErr(tc.err, tc.target); got != tc.want || got != errors.Is(tc.err, tc.target) {
			t.Errorf("isErr(%v, %v) = %v, want %v", tc.err, tc.target, got, tc.want)
		}
	}
}
