package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/petrel-mqtt/petrel/internal/fdtable"
	"github.com/petrel-mqtt/petrel/packet"
)

// connSettle is how long conns waits after the last CONNACK before it
// reads the broker's memory.
const connSettle = 500 * time.Millisecond

// runConns opens c.Clients idle connections (CONNECT, clean session, no
// keepalive), reports the connection rate and, given the broker's pid, its
// resident memory per connection, then closes them.
func runConns(ctx context.Context, c *Config, run uint16, r *Report) error {
	limit, err := raiseFileLimit()
	if err != nil {
		return err
	}
	if uint64(c.Clients)+64 > limit {
		return fmt.Errorf("%w: %d connections need more than the open-file limit %d allows", ErrConfig, c.Clients, limit)
	}
	// The load generator's own descriptor table, sized before the clock
	// starts: otherwise each doubling of it (256, 512, ... descriptors)
	// stalls a dial for an RCU grace period, milliseconds, whatever the
	// broker (internal/fdtable).
	if _, err := fdtable.Reserve(c.Clients + 64); err != nil {
		return err
	}
	var errs errSink
	meter := startMeter(c.PID)
	ctx, cancel := context.WithTimeout(ctx, c.Duration+c.Drain+time.Minute)
	defer cancel()
	conns := make([]*conn, c.Clients)
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.abort() // after the measurement; nothing left in TIME_WAIT for the next run
			}
		}
	}()
	var mu sync.Mutex
	var src sources
	start := time.Now()
	_ = forEach(c.Clients, func(i int) error { // errors are gathered in errs
		o := dialOpts{addr: r.Broker, clientID: fmt.Sprintf("pb-%04x-c%d", run, i), clean: true, version: c.Version, readBuf: 16,
			local: src.addr(c.Host, i), tr: c.tr}
		cn, _, err := dial(ctx, o)
		if err != nil && o.local != nil && src.refuse(err) {
			o.local = nil // this system has no 127.0.0.x but 127.0.0.1
			cn, _, err = dial(ctx, o)
		}
		if err != nil {
			errs.add("connection %d: %v", i, err)
			return err
		}
		mu.Lock()
		conns[i] = cn
		r.Connections++
		mu.Unlock()
		return nil
	})
	elapsed := time.Since(start)
	r.Duration = elapsed.Seconds()
	r.Elapsed = r.Duration
	if elapsed > 0 {
		r.ConnRate = float64(r.Connections) / elapsed.Seconds()
	}
	if c.PID > 0 {
		time.Sleep(connSettle)
	}
	meter.finish(r, 0)
	if r.Connections > 0 && c.PID > 0 {
		r.RSSPerConn = float64(r.RSSAfter-r.RSSBefore) / float64(r.Connections)
	}
	r.Errors = append(r.Errors, errs.list()...)
	return nil
}

// runRetained publishes c.Count retained messages on distinct topics,
// then subscribes to "#" and times the arrival of all of them. It clears
// the retained messages at the end.
func runRetained(ctx context.Context, c *Config, run uint16, r *Report) error {
	prefix := fmt.Sprintf("petrel-bench/%04x/ret", run)
	clk := newClock()
	var errs errSink
	r.Publishers, r.Subscribers = 1, 1
	ctx, cancel := context.WithTimeout(ctx, c.Duration+c.Drain+time.Minute)
	defer cancel()
	pc, _, err := dial(ctx, dialOpts{addr: r.Broker, clientID: fmt.Sprintf("pb-%04x-p", run), clean: true, version: c.Version, tr: c.tr})
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	p := &publisher{c: pc, qos: c.QoS, window: c.Window, quota: int64(c.Count), retain: true, topics: make([]string, c.Count)}
	for i := range p.topics {
		p.topics[i] = fmt.Sprintf("%s/%d", prefix, i)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.close() // ends the ack reader before wg.Wait
	pubCtx, cancelPub := context.WithTimeout(ctx, c.Duration+c.Drain)
	defer cancelPub()
	start := clk.now()
	end, err := p.run(pubCtx, time.Now().Add(c.Duration), run, c.Size, clk, &wg, &errs)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if err := p.ping(pubCtx); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	r.Sent, r.Acked = p.sent.Load(), p.acked.Load()
	r.Duration = time.Duration(end - start).Seconds()
	if r.Duration > 0 {
		r.SentRate = float64(r.Sent) / r.Duration
	}
	defer clearRetained(ctx, p, int(r.Sent), &errs)

	sc, _, err := dial(ctx, dialOpts{addr: r.Broker, clientID: fmt.Sprintf("pb-%04x-s", run), clean: true, version: c.Version, tr: c.tr})
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	defer sc.close()
	s := &subscriber{c: sc, qos: c.QoS, filter: "#", id: "retained subscriber", t: newTracker(run, clk)}
	meter := startMeter(c.PID)
	subStart := clk.now()
	if err := sc.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#", QoS: c.QoS}}}); err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	var swg sync.WaitGroup
	swg.Add(1)
	go func() {
		defer swg.Done()
		if err := s.read(clk); !s.c.ended(err) {
			errs.add("subscriber: %v", err)
		}
	}()
	deadline := time.Now().Add(c.Drain)
	last, lastChange := int64(0), time.Now()
	for last < r.Sent && time.Now().Before(deadline) && time.Since(lastChange) < idleDrain {
		time.Sleep(2 * time.Millisecond)
		if n := s.t.received.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	meter.finish(r, s.t.received.Load())
	sc.close()
	swg.Wait()
	r.Expected = r.Sent
	r.Received = s.t.received.Load()
	r.Lost = r.Expected - r.Received
	r.Duplicates, r.Foreign = s.t.dups, s.t.foreign // no order is defined across retained topics
	if lr := s.t.last.Load(); lr > subStart {
		r.TimeToAll = time.Duration(lr - subStart).Seconds()
		r.Elapsed = r.TimeToAll
		r.DeliveredRate = float64(r.Received) / r.TimeToAll
	}
	if r.Lost > 0 {
		errs.add("%d of %d retained messages did not arrive within %v", r.Lost, r.Sent, c.Drain)
	}
	r.Errors = append(r.Errors, errs.list()...)
	return nil
}

// clearRetained publishes an empty retained message on the first n topics
// of p and waits for the broker to have handled them.
func clearRetained(ctx context.Context, p *publisher, n int, errs *errSink) {
	buf := make([]byte, 0, flushSize+64)
	pk := packet.Publish{Retain: true}
	for i := range n {
		pk.Topic = p.topics[i]
		var err error
		if buf, err = pk.Append(buf, p.c.v); err != nil {
			errs.add("clear retained: %v", err)
			return
		}
		if len(buf) >= flushSize || i == n-1 {
			p.c.wmu.Lock()
			_, err = p.c.nc.Write(buf)
			p.c.wmu.Unlock()
			if err != nil {
				errs.add("clear retained: %v", err)
				return
			}
			buf = buf[:0]
		}
	}
	if err := p.ping(ctx); err != nil {
		errs.add("clear retained: %v", err)
	}
}
