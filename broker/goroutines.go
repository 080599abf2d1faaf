package broker

import (
	"sync"
	"sync/atomic"
)

// Connection goroutines (a reader for a new or resumed connection, a
// writer) are started often: per connection, per wake of a parked one, per
// burst for a writer. A new goroutine starts on a small stack and grows it
// by copying on its first deep call (the first read-deadline update), which
// cost about a tenth of the broker's CPU when connections came and went.
// The broker therefore keeps a few finished goroutines waiting, their
// stacks grown, and hands them the next job; only when none waits is a
// goroutine started. The pool is bounded, owned by the Broker and ends at
// Shutdown; an idle client still holds no goroutine.

// task is what a pooled goroutine runs for a connection.
type task uint8

const (
	taskServe     task = iota // conn.serve: a new connection's reader
	taskResume                // conn.resume: a parked connection's reader
	taskWrite                 // conn.writeLoop
	taskEnd                   // conn.end: cleanup after an inline reader (serveInline)
	taskWriteRest             // conn.writeRest: what writeInline could not write without waiting
	taskCount
)

type job struct {
	c *conn
	t task
}

func (j job) run() {
	switch j.t {
	case taskServe:
		j.c.serve()
	case taskResume:
		j.c.resume()
	case taskWrite:
		j.c.writeLoop()
	case taskEnd:
		j.c.end(j.c.endErr)
	case taskWriteRest:
		j.c.writeRest()
	}
}

// maxIdleGoroutines bounds the goroutines waiting for a job (each holds
// its stack, a few KiB).
const maxIdleGoroutines = 32

// goroutines is the Broker's pool of waiting goroutines.
type goroutines struct {
	jobs chan job      // unbuffered: a send succeeds only into a waiting goroutine
	done chan struct{} // closed at Shutdown: waiting goroutines exit
	idle atomic.Int32
	wg   sync.WaitGroup
	runs [taskCount]atomic.Uint64 // jobs run, by task
}

func newGoroutines(done chan struct{}) *goroutines {
	return &goroutines{jobs: make(chan job), done: done}
}

// run runs j on a waiting goroutine, or on a new one when none waits.
func (g *goroutines) run(j job) {
	g.runs[j.t].Add(1)
	select {
	case g.jobs <- j:
	default:
		g.wg.Add(1)
		go g.loop(j)
	}
}

// loop runs j, then waits for further jobs while fewer than
// maxIdleGoroutines others wait, until Shutdown.
func (g *goroutines) loop(j job) {
	defer g.wg.Done()
	for {
		growStack()
		j.run()
		j = job{} // let the connection go while waiting
		if g.idle.Add(1) > maxIdleGoroutines {
			g.idle.Add(-1)
			return
		}
		select {
		case j = <-g.jobs:
			g.idle.Add(-1)
		case <-g.done:
			g.idle.Add(-1)
			return
		}
	}
}

// stackRoom is the stack a connection job needs (handling a CONNECT is the
// deepest path).
const stackRoom = 6 << 10

// growStack makes sure the goroutine has stackRoom of stack before a job
// starts, while its stack is shallow and growing it copies next to
// nothing: a new goroutine starts on 2 KiB, and the collector halves the
// stack of one that waited idle. When the room is there it costs one stack
// check and zeroing the frame.
//
//go:noinline
func growStack() {
	var room [stackRoom]byte
	touch(room[:])
}

//go:noinline
func touch(b []byte) { b[len(b)-1] = 1 }

// wait waits for every pooled goroutine to end; Shutdown calls it after
// closing done and after every connection ended.
func (g *goroutines) wait() { g.wg.Wait() }
