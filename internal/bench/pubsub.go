package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// dialParallel bounds concurrent connection set-ups.
const dialParallel = 64

// idleDrain is how long the drain waits without progress before it gives
// the missing messages up as lost.
const idleDrain = time.Second

// errSink gathers the errors of a run's goroutines, keeping the first few.
type errSink struct {
	mu   sync.Mutex
	errs []string
	n    int
}

func (s *errSink) add(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, a...))
	}
}

func (s *errSink) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n > len(s.errs) {
		return append(s.errs, fmt.Sprintf("... %d errors in all", s.n))
	}
	return s.errs
}

// publisher writes stamped PUBLISH packets on one connection. With QoS 1
// or 2 a second goroutine reads the acknowledgements and returns window
// tokens.
type publisher struct {
	id     uint16
	c      *conn
	topic  string
	qos    byte
	window int
	quota  int64   // messages to send; < 0: no count bound
	rate   float64 // messages per second; 0: unpaced
	retain bool
	each   bool     // a write per PUBLISH (Config.WriteEach)
	topics []string // when set, message seq goes to topics[seq] (quota <= len(topics))

	tokens chan struct{}
	inuse  []atomic.Uint32 // bitmap of packet ids awaiting their final ack
	sent   atomic.Int64
	acked  atomic.Int64
	pongs  atomic.Int64
}

// subscriber reads PUBLISH packets on one connection and tracks them.
type subscriber struct {
	c      *conn
	filter string
	id     string
	qos    byte
	t      *tracker
	pubs   []int // publisher indexes whose messages this subscriber is owed
}

// layout builds the publishers' topics and the subscribers' filters of a
// pub/sub scenario. prefix is unique to the run.
func layout(c *Config, prefix string) (pubTopics []string, subFilters []string, owed [][]int) {
	switch c.Scenario {
	case "fanin":
		for i := range c.Clients {
			pubTopics = append(pubTopics, fmt.Sprintf("%s/in/%d", prefix, i))
		}
		all := make([]int, c.Clients)
		for i := range all {
			all[i] = i
		}
		return pubTopics, []string{prefix + "/in/+"}, [][]int{all}
	case "fanout":
		for range c.Clients {
			subFilters = append(subFilters, prefix+"/out")
			owed = append(owed, []int{0})
		}
		return []string{prefix + "/out"}, subFilters, owed
	case "latency":
		return []string{prefix + "/lat"}, []string{prefix + "/lat"}, [][]int{{0}}
	default: // pairs, durable (Subscribers per publisher)
		for i := range c.Clients {
			t := fmt.Sprintf("%s/pair/%d", prefix, i)
			pubTopics = append(pubTopics, t)
			for range max(c.Subscribers, 1) {
				subFilters = append(subFilters, t)
				owed = append(owed, []int{i})
			}
		}
		return pubTopics, subFilters, owed
	}
}

// forEach runs f(i) for i in [0, n) with at most dialParallel at once and
// returns the first error.
func forEach(n int, f func(i int) error) error {
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func runPubSub(ctx context.Context, c *Config, run uint16, r *Report) error {
	prefix := fmt.Sprintf("petrel-bench/%04x", run)
	pubTopics, subFilters, owed := layout(c, prefix)
	r.Publishers, r.Subscribers = len(pubTopics), len(subFilters)
	durable := c.Scenario == "durable"
	clk := newClock()
	var errs errSink

	subAddr := r.Broker
	if r.SubBroker != "" {
		subAddr = r.SubBroker
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	subs := make([]*subscriber, len(subFilters))
	pubs := make([]*publisher, len(pubTopics))
	defer func() {
		for _, s := range subs {
			if s != nil && s.c != nil {
				s.c.close()
			}
		}
		for _, p := range pubs {
			if p != nil && p.c != nil {
				p.c.close()
			}
		}
	}()
	err := forEach(len(subs), func(i int) error {
		s := &subscriber{filter: subFilters[i], qos: c.QoS, pubs: owed[i], t: newTracker(run, clk),
			id: fmt.Sprintf("pb-%04x-s%d", run, i)}
		o := dialOpts{addr: subAddr, clientID: s.id, clean: !durable, version: c.Version, tr: c.tr}
		if durable {
			o.sessionExpiry = 600
		}
		var err error
		if s.c, _, err = dial(setupCtx, o); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		subs[i] = s
		return s.c.subscribe(setupCtx, s.filter, s.qos)
	})
	if err == nil {
		err = forEach(len(pubs), func(i int) error {
			p := &publisher{id: uint16(i), topic: pubTopics[i], qos: c.QoS, window: c.Window, quota: -1, each: c.WriteEach}
			n := len(pubTopics)
			if c.Count > 0 {
				p.quota = int64(c.Count / n)
				if i < c.Count%n {
					p.quota++
				}
			}
			if c.Rate > 0 {
				p.rate = c.Rate / float64(n)
			}
			nc, ack, err := dial(setupCtx, dialOpts{addr: r.Broker, clientID: fmt.Sprintf("pb-%04x-p%d", run, i), clean: true, version: c.Version, tr: c.tr})
			if err != nil {
				return fmt.Errorf("publisher %d: %w", i, err)
			}
			p.c = nc
			if ack.Properties.Has(packet.PropReceiveMaximum) && int(ack.Properties.ReceiveMaximum) < p.window {
				p.window = int(ack.Properties.ReceiveMaximum)
			}
			pubs[i] = p
			return nil
		})
	}
	if err != nil {
		return err
	}
	cancelSetup()
	if durable {
		defer cleanSessions(subs, subAddr, c.Version, c.tr)
	}
	if c.Settle > 0 {
		select {
		case <-time.After(c.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	meter := startMeter(c.PID)
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.read(clk); !s.c.ended(err) {
				errs.add("subscriber %s: %v", s.id, err)
			}
		}()
	}
	start := clk.now()
	stopAt := time.Now().Add(c.Duration)
	runCtx, cancelRun := context.WithDeadline(ctx, stopAt.Add(c.Drain))
	defer cancelRun()
	var pwg sync.WaitGroup
	var pubEnd atomic.Int64
	for _, p := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			end, err := p.run(runCtx, stopAt, run, c.Size, clk, &wg, &errs)
			if !p.c.ended(err) {
				errs.add("publisher %d: %v", p.id, err)
			}
			for {
				old := pubEnd.Load()
				if end <= old || pubEnd.CompareAndSwap(old, end) {
					break
				}
			}
		}()
	}
	pwg.Wait()

	var expected int64
	for _, s := range subs {
		for _, i := range s.pubs {
			expected += pubs[i].sent.Load()
		}
	}
	received := func() (n int64) {
		for _, s := range subs {
			n += s.t.received.Load()
		}
		return n
	}
	// Drain: wait for every owed message, until progress stops for
	// idleDrain or the run's deadline passes.
	drainEnd := time.Now().Add(c.Drain)
	last, lastChange := received(), time.Now()
	for last < expected && ctx.Err() == nil && time.Now().Before(drainEnd) && time.Since(lastChange) < idleDrain {
		time.Sleep(5 * time.Millisecond)
		if n := received(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	meter.finish(r, received())
	for _, s := range subs {
		s.c.close()
	}
	for _, p := range pubs {
		p.c.close()
	}
	wg.Wait()

	var hist histogram
	var lastRecv int64
	for _, s := range subs {
		r.Received += s.t.received.Load()
		r.Duplicates += s.t.dups
		r.OutOfOrder += s.t.ooo
		r.Foreign += s.t.foreign
		r.LostGaps += s.t.gaps()
		hist.merge(&s.t.hist)
		lastRecv = max(lastRecv, s.t.last.Load())
	}
	for _, p := range pubs {
		r.Sent += p.sent.Load()
		r.Acked += p.acked.Load()
	}
	r.Expected = expected
	r.Lost = expected - r.Received
	r.LostTail = r.Lost - r.LostGaps
	r.Duration = time.Duration(pubEnd.Load() - start).Seconds()
	if r.Duration > 0 {
		r.SentRate = float64(r.Sent) / r.Duration
	}
	if lastRecv > start {
		r.Elapsed = time.Duration(lastRecv - start).Seconds()
		r.DeliveredRate = float64(r.Received) / r.Elapsed
	}
	r.Latency = latencyOf(&hist)
	if c.QoS > 0 && r.Acked < r.Sent {
		errs.add("%d of %d QoS %d publishes not acknowledged", r.Sent-r.Acked, r.Sent, c.QoS)
	}
	r.Errors = append(r.Errors, errs.list()...)
	return nil
}

func latencyOf(h *histogram) Latency {
	us := func(ns int64) float64 { return math.Round(float64(ns)/100) / 10 }
	l := Latency{P50: us(h.quantile(0.5)), P99: us(h.quantile(0.99)), P999: us(h.quantile(0.999)), Max: us(h.max)}
	if h.n > 0 {
		l.Mean = us(h.sum / h.n)
	}
	return l
}

// cleanSessions removes the persistent sessions of a durable run: each
// subscriber reconnects with a clean start and disconnects.
func cleanSessions(subs []*subscriber, addr string, v packet.Version, tr *transport) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = forEach(len(subs), func(i int) error { // best effort: a leftover session expires
		c, _, err := dial(ctx, dialOpts{addr: addr, clientID: subs[i].id, clean: true, version: v, tr: tr})
		if err == nil {
			c.disconnect()
		}
		return err
	})
}

// read is the subscriber's loop: it tracks every PUBLISH and acknowledges
// QoS 1 and 2, gathering acks and writing them when no more input is
// buffered.
func (s *subscriber) read(clk clock) error {
	c := s.c
	var acks []byte
	for {
		if len(acks) > 0 && c.br.Buffered() == 0 {
			c.wmu.Lock()
			_, err := c.nc.Write(acks)
			c.wmu.Unlock()
			if err != nil {
				return err
			}
			acks = acks[:0]
		}
		h, body, err := c.readFrame()
		if err != nil {
			return err
		}
		switch packet.Type(h >> 4) {
		case packet.PUBLISH:
			_, pid, payload, err := parsePublish(h, body, c.v)
			if err != nil {
				return err
			}
			s.t.record(payload, clk.now())
			switch h >> 1 & 3 {
			case 1:
				acks = appendAck(acks, packet.PUBACK, pid)
			case 2:
				acks = appendAck(acks, packet.PUBREC, pid)
			}
		case packet.PUBREL:
			pid, err := ackID(body)
			if err != nil {
				return err
			}
			acks = appendAck(acks, packet.PUBCOMP, pid)
		case packet.DISCONNECT:
			return fmt.Errorf("broker sent DISCONNECT")
		}
	}
}
