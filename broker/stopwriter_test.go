package broker

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond (a test in package broker cannot use mqtttest).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestStopWriterWaitsOnRelease: stopWriter waits for a running writer on
// a channel that releaseWriter closes (no polling), returns once the
// writer let go, and then holds the writing flag for good: no writer
// starts again.
func TestStopWriterWaitsOnRelease(t *testing.T) {
	c := &conn{}
	c.writing.Store(true) // a writer runs
	done := make(chan struct{})
	go func() {
		c.stopWriter()
		close(done)
	}()
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.mu.writerIdle != nil && c.stopWait.Load()
	}, "stopWriter to wait on its channel")
	select {
	case <-done:
		t.Fatal("stopWriter returned while the writer runs")
	default:
	}
	c.releaseWriter()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stopWriter did not return after the writer let go")
	}
	if c.writing.CompareAndSwap(false, true) {
		t.Fatal("a writer could start after stopWriter")
	}
}

// TestStopWriterRacesWriters: writers taking and releasing the flag in a
// loop, as kick and writeInline do, never make stopWriter miss the release
// it waits for (each round ends; run under -race).
func TestStopWriterRacesWriters(t *testing.T) {
	for round := range 200 {
		c := &conn{}
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if c.writing.CompareAndSwap(false, true) {
						runtime.Gosched()
						c.releaseWriter()
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() {
			c.stopWriter()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: stopWriter missed the writer's release", round)
		}
		wg.Wait()
		if c.writing.CompareAndSwap(false, true) {
			t.Fatalf("round %d: the flag was given back after stopWriter", round)
		}
	}
}
