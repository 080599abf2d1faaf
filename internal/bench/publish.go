package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// run publishes until stopAt, the quota or ctx ends it, then waits (within
// ctx) for the acknowledgements of QoS 1 and 2 messages. It returns the
// clock time of its last write. The connection's reader goroutine is added
// to wg; it ends when the connection is closed.
func (p *publisher) run(ctx context.Context, stopAt time.Time, run uint16, size int, clk clock, wg *sync.WaitGroup, errs *errSink) (lastWrite int64, err error) {
	c := p.c
	if p.qos > 0 {
		p.tokens = make(chan struct{}, p.window)
		for range p.window {
			p.tokens <- struct{}{}
		}
		p.inuse = make([]atomic.Uint32, 65536/32)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.readAcks(errs); !p.c.ended(err) {
			errs.add("publisher %d: %v", p.id, err)
		}
	}()
	// A write blocked by a broker that stopped reading ends with the run.
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.nc.SetWriteDeadline(deadline) // a failure shows up as a write error
	}
	payload := make([]byte, size)
	pk := packet.Publish{QoS: p.qos, Topic: p.topic, Payload: payload, Retain: p.retain}
	buf := make([]byte, 0, flushSize+pk.Size(c.v))
	var written int64
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		c.wmu.Lock()
		_, err := c.nc.Write(buf)
		c.wmu.Unlock()
		buf = buf[:0]
		p.sent.Store(written)
		lastWrite = clk.now()
		return err
	}
	stop := time.NewTimer(time.Until(stopAt))
	defer stop.Stop()
	startNs := clk.now()
	stopNs := startNs + int64(time.Until(stopAt))
	var pid uint16
loop:
	for seq := uint32(0); p.quota < 0 || int64(seq) < p.quota; seq++ {
		now := clk.now()
		if now >= stopNs || ctx.Err() != nil {
			break
		}
		if p.rate > 0 {
			if due := startNs + int64(float64(seq)/p.rate*1e9); due > now {
				if err := flush(); err != nil {
					return lastWrite, err
				}
				time.Sleep(time.Duration(min(due, stopNs) - now))
				if now = clk.now(); now >= stopNs {
					break
				}
			}
		}
		if p.qos > 0 {
			select {
			case <-p.tokens:
			default:
				if err := flush(); err != nil {
					return lastWrite, err
				}
				select {
				case <-p.tokens:
				case <-stop.C:
					break loop
				case <-ctx.Done():
					break loop
				}
				now = clk.now()
			}
			pid = p.nextPID(pid)
			pk.PacketID = pid
		}
		if p.topics != nil {
			pk.Topic = p.topics[seq]
		}
		stamp(payload, run, p.id, seq, now)
		if buf, err = pk.Append(buf, c.v); err != nil {
			return lastWrite, err
		}
		written++
		if len(buf) >= flushSize || p.each {
			if err := flush(); err != nil {
				return lastWrite, err
			}
		}
	}
	if err := flush(); err != nil {
		return lastWrite, err
	}
	// Wait for the outstanding acknowledgements while they keep coming.
	last, lastChange := p.acked.Load(), time.Now()
	for p.qos > 0 && last < written && ctx.Err() == nil && time.Since(lastChange) < idleDrain {
		time.Sleep(2 * time.Millisecond)
		if n := p.acked.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	return lastWrite, nil
}

// nextPID returns a free packet identifier after last and marks it in use.
func (p *publisher) nextPID(last uint16) uint16 {
	for {
		last++
		if last == 0 {
			last = 1
		}
		w, b := &p.inuse[last/32], uint32(1)<<(last%32)
		for {
			old := w.Load()
			if old&b != 0 {
				break // in use: try the next one
			}
			if w.CompareAndSwap(old, old|b) {
				return last
			}
		}
	}
}

// release frees packet identifier pid, reporting whether it was in use.
func (p *publisher) release(pid uint16) bool {
	w, b := &p.inuse[pid/32], uint32(1)<<(pid%32)
	for {
		old := w.Load()
		if old&b == 0 {
			return false
		}
		if w.CompareAndSwap(old, old&^b) {
			return true
		}
	}
}

// complete ends the flow of pid: it frees the identifier and returns a
// window token.
func (p *publisher) complete(pid uint16) {
	if p.release(pid) {
		p.acked.Add(1)
		p.tokens <- struct{}{}
	}
}

// readAcks reads the publisher's connection: PUBACK and PUBCOMP complete a
// message, PUBREC is answered with PUBREL (gathered and written when no
// more input is buffered).
func (p *publisher) readAcks(errs *errSink) error {
	c := p.c
	var out []byte
	failed := 0
	for {
		if len(out) > 0 && c.br.Buffered() == 0 {
			c.wmu.Lock()
			_, err := c.nc.Write(out)
			c.wmu.Unlock()
			if err != nil {
				return err
			}
			out = out[:0]
		}
		h, body, err := c.readFrame()
		if err != nil {
			return err
		}
		t := packet.Type(h >> 4)
		switch t {
		case packet.PUBACK, packet.PUBREC, packet.PUBCOMP:
			if p.qos == 0 {
				return fmt.Errorf("unexpected %v for QoS 0", t)
			}
			pid, err := ackID(body)
			if err != nil {
				return err
			}
			if len(body) > 2 && body[2] >= 0x80 { // 5.0 failure reason code
				if failed++; failed <= 3 {
					errs.add("publisher %d: %v reason %v", p.id, t, packet.ReasonCode(body[2]))
				}
				p.complete(pid)
				continue
			}
			if t == packet.PUBREC {
				out = appendAck(out, packet.PUBREL, pid)
			} else {
				p.complete(pid)
			}
		case packet.PINGRESP:
			p.pongs.Add(1)
		case packet.DISCONNECT:
			return fmt.Errorf("broker sent DISCONNECT")
		}
	}
}

// ping sends PINGREQ and waits for the PINGRESP, so that the broker has
// handled everything sent before it. The ack reader must be running.
func (p *publisher) ping(ctx context.Context) error {
	n := p.pongs.Load()
	if err := p.c.send(&packet.Pingreq{}); err != nil {
		return err
	}
	for p.pongs.Load() == n {
		if ctx.Err() != nil {
			return fmt.Errorf("no PINGRESP: %w", ctx.Err())
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
