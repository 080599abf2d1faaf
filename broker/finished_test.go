package broker

import "testing"

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
