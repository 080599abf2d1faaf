// Package warm keeps the CPUs from sleeping deeply while messages flow at
// a light rate, so that a woken connection runs within microseconds.
//
// A broker at a light rate (a message every millisecond, say) sleeps
// between messages, and so do the CPUs it runs on. On a virtual machine a
// halted vCPU takes tens to hundreds of microseconds to run a thread woken
// on it (BENCHMARKS.md, ninth session: the broker's thread waited 63 us on
// average, 120-190 us in the slow third, for work of 10-45 us), and deep
// C-states do the same on bare metal. While traffic flows and the process
// is not busy, a Warmer keeps one thread per CPU (up to MaxThreads), each
// pinned to its CPU and sleeping Interval at a time in the kernel: no CPU
// then sleeps longer than Interval, and none sleeps deeply. It stops
// IdleAfter after the last Touch, and while the process uses more than
// BusyCores of CPU (a busy CPU does not sleep), and costs nothing then.
//
// The warm threads are not Go threads: a few instructions of assembly
// start each with clone(2), every signal blocked, looping on nanosleep(2)
// and nothing else (raw_linux_*.s). A Go thread asleep in a system call
// would hold its P until the scheduler's monitor took it back, and the
// runtime's entry and exit around each sleep cost more than the sleep
// (BENCHMARKS.md, tenth session). A raw thread costs the kernel's
// wake-up alone, and it saves the broker's threads more than that: their
// own wake-ups on a warm CPU are cheaper.
//
// Linux on amd64 and arm64 only: elsewhere Start returns nil, and a nil
// Warmer's methods do nothing.
package warm

import (
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/internal/procs"
)

// Options are a Warmer's settings; zero fields take the defaults.
type Options struct {
	// Interval is how long each warm thread sleeps at a time (1 ms).
	Interval time.Duration
	// IdleAfter stops warming this long after the last Touch (50 ms).
	IdleAfter time.Duration
	// BusyCores stops warming while the process uses more CPU than this
	// many cores, sampled every Sample (0.5).
	BusyCores float64
	// Sample is how often the Warmer looks at Touch and the CPU (10 ms).
	Sample time.Duration
	// MaxThreads bounds the CPUs warmed (8).
	MaxThreads int
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = time.Millisecond
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = 50 * time.Millisecond
	}
	if o.BusyCores <= 0 {
		o.BusyCores = 0.5
	}
	if o.Sample <= 0 {
		o.Sample = 10 * time.Millisecond
	}
	if o.MaxThreads <= 0 {
		o.MaxThreads = 8
	}
}

// State is what a Warmer is doing.
type State int32

const (
	// Dormant: no traffic since IdleAfter; nothing runs.
	Dormant State = iota
	// Warming: a thread per CPU wakes every Interval.
	Warming
	// Busy: traffic, but the process uses more than BusyCores: no thread
	// warms; the Warmer samples the CPU every Sample.
	Busy
)

func (s State) String() string {
	switch s {
	case Dormant:
		return "dormant"
	case Warming:
		return "warming"
	case Busy:
		return "busy"
	}
	return "unknown"
}

// Warmer keeps CPUs warm while Touch is called. Use Start.
type Warmer struct {
	o    Options
	cpus []int // the CPUs warmed

	touched atomic.Bool
	dormant atomic.Bool
	state   atomic.Int32
	wake    chan struct{} // Touch -> run, when dormant
	stop    chan struct{}
	done    chan struct{}

	// Starts counts the times warming began (for tests and the log).
	starts atomic.Int64

	cpuTime func() (time.Duration, bool)
	onState func(State)
}

// Start starts a Warmer on the CPUs this process may run on (at most
// o.MaxThreads of them), dormant until the first Touch; nil where it
// cannot run (not Linux, one CPU). onState, when not nil, is told of each
// change of state, on the Warmer's goroutine.
func Start(o Options, onState func(State)) *Warmer {
	o.defaults()
	mask, ok := allowedMask()
	cpus := mask.cpus()
	if !ok || len(cpus) < 2 {
		return nil // one CPU: nothing else runs while the broker does
	}
	if len(cpus) > o.MaxThreads {
		cpus = cpus[:o.MaxThreads]
	}
	w := &Warmer{
		o: o, cpus: cpus,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		cpuTime: procs.ProcessCPU, onState: onState,
	}
	w.dormant.Store(true)
	go w.run()
	return w
}

// Touch tells the Warmer that traffic flows. It is cheap enough for every
// read: two atomic loads when nothing changes.
func (w *Warmer) Touch() {
	if w == nil {
		return
	}
	if !w.touched.Load() {
		w.touched.Store(true)
	}
	if w.dormant.Load() {
		w.wakeDormant()
	}
}

// wakeDormant wakes the controller if it is dormant (once: the first
// caller to take the Warmer out of dormancy sends).
func (w *Warmer) wakeDormant() {
	if w.dormant.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// State reports what the Warmer is doing.
func (w *Warmer) State() State {
	if w == nil {
		return Dormant
	}
	return State(w.state.Load())
}

// Starts reports how many times warming began.
func (w *Warmer) Starts() int64 {
	if w == nil {
		return 0
	}
	return w.starts.Load()
}

// CPUs reports the CPUs the Warmer warms.
func (w *Warmer) CPUs() []int {
	if w == nil {
		return nil
	}
	return append([]int(nil), w.cpus...)
}

// Stop stops the Warmer and waits until its threads have exited.
func (w *Warmer) Stop() {
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
}

func (w *Warmer) setState(s State) {
	if State(w.state.Swap(int32(s))) != s && w.onState != nil {
		w.onState(s)
	}
}

// run is the Warmer's controller: dormant until a Touch, then warming or
// busy by the CPU it samples, dormant again IdleAfter after the last
// Touch.
func (w *Warmer) run() {
	defer close(w.done)
	idleSamples := int((w.o.IdleAfter + w.o.Sample - 1) / w.o.Sample)
	for {
		select { // dormant
		case <-w.wake:
		case <-w.stop:
			return
		}
		w.touched.Store(false)
		var th threads
		idle := 0
		lastCPU, cpuOK := w.cpuTime()
		lastAt := time.Now()
		busy := false
		calm := 0 // samples in a row below the busy mark, while busy
		t := time.NewTicker(w.o.Sample)
	active:
		for {
			if !busy && th == nil {
				th = w.startThreads()
				w.starts.Add(1)
				w.setState(Warming)
			}
			select {
			case <-w.stop:
				t.Stop()
				th.stop()
				return
			case <-t.C:
			}
			if w.touched.Swap(false) {
				idle = 0
			} else if idle++; idle >= idleSamples {
				break active
			}
			if now, ok := w.cpuTime(); ok && cpuOK {
				at := time.Now()
				cores := (now - lastCPU).Seconds() / at.Sub(lastAt).Seconds()
				lastCPU, lastAt = now, at
				switch {
				case !busy && cores > w.o.BusyCores:
					busy, calm = true, 0
					th.stop()
					th = nil
					w.setState(Busy)
				case busy && cores < w.o.BusyCores*0.8:
					// Warming again at the top of the loop once calm for
					// a while: a load near the mark must not start and
					// stop the threads at every sample.
					if calm++; calm >= calmSamples {
						busy = false
					}
				case busy:
					calm = 0
				}
			}
		}
		t.Stop()
		th.stop()
		w.setState(Dormant)
		w.dormant.Store(true)
		// A Touch between the last sample and the store above saw the
		// Warmer active and sent nothing: look once more.
		if w.touched.Load() {
			w.wakeDormant()
		}
	}
}

// calmSamples is how many samples in a row under the busy mark turn a
// busy Warmer back to warming.
const calmSamples = 5

// cpuMask is a CPU affinity mask, as sched_getaffinity fills it.
type cpuMask [1024 / 64]uint64

// cpus lists the CPUs in m.
func (m *cpuMask) cpus() []int {
	var cpus []int
	for i, word := range m {
		for b := range 64 {
			if word&(1<<b) != 0 {
				cpus = append(cpus, i*64+b)
			}
		}
	}
	return cpus
}

// threads are the warm threads of one warming period.
type threads []*rawThread

// startThreads starts a raw thread pinned to each CPU. A CPU whose thread
// the kernel refused goes without.
func (w *Warmer) startThreads() threads {
	th := make(threads, 0, len(w.cpus))
	for _, cpu := range w.cpus {
		if t := startRaw(cpu, w.o.Interval); t != nil {
			th = append(th, t)
		}
	}
	return th
}

// stop ends the threads and waits until they have exited (one Interval
// at most: each is told first, then waited for). A nil th does nothing.
func (th threads) stop() {
	for _, t := range th {
		t.end()
	}
	for _, t := range th {
		t.wait()
	}
}
