// Command flood runs one of issue 18's floods against an MQTT broker on
// loopback for a bounded time, then stops by itself. bench/floods.sh runs
// it against `petrel serve` while `petrel bench latency` measures a
// bystander pair.
//
//	go run ./bench/flood -kind bcrypt -addr 127.0.0.1:18831 -duration 12s
//
// Kinds (-workers overrides the number of attacking connections):
//
//	bcrypt       32 loops of CONNECT with a wrong password for one user
//	             (-user), reconnecting after each refusal
//	bcrypt-nowait  the same without waiting for the CONNACK: each loop
//	             closes its connection once the CONNECT is written and
//	             reconnects at once
//	bcrypt-spread  the same with a new username per attempt and each loop
//	             from its own source address (127.0.1.x)
//	argon2id     40 such loops, a new username per attempt, each from its
//	             own source address (unknown names cost a dummy argon2id
//	             check when the users file's hashes are argon2id)
//	retained     -retained retained messages of -size bytes, then 64
//	             subscribers to them that never read, each subscribing
//	             again every second
//	aliases      a 5.0 subscriber accepting 65535 topic aliases, reading,
//	             and publishers sending distinct -size-byte topics at -rate
//	stalled      a QoS 1 subscriber that never reads, and publishers of
//	             -size (64 KiB) messages at -rate
//	preconnect-held       150 connections declaring a 16 MiB CONNECT, each
//	             opened again 1 s after the broker closes it
//	preconnect-reconnect  the same, opened again at once
//	dribble      150 connections sending a CONNECT one byte every 5 s,
//	             opened again at once when closed
//
// It prints what the flood did (connections, refusals, messages). Traffic
// goes to loopback only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

type config struct {
	addr     string
	kind     string
	duration time.Duration
	workers  int
	user     string
	size     int
	rate     float64
	retained int
	end      time.Time // the flood's end
}

// counts is what a flood reports.
type counts struct {
	dials, dialErrs, connacks, refused, closed, published atomic.Int64
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:1883", "the broker's TCP listener (loopback)")
	flag.StringVar(&c.kind, "kind", "", "the flood (see the package comment)")
	flag.DurationVar(&c.duration, "duration", 12*time.Second, "how long the flood runs (at most 2m)")
	flag.IntVar(&c.workers, "workers", 0, "attacking connections (0: the kind's default)")
	flag.StringVar(&c.user, "user", "victim", "bcrypt: the username guessed")
	flag.IntVar(&c.size, "size", 0, "retained, stalled: payload bytes; aliases: topic bytes (0: the kind's default)")
	flag.Float64Var(&c.rate, "rate", 0, "aliases, stalled: messages per second (0: the kind's default)")
	flag.IntVar(&c.retained, "retained", 16, "retained: retained messages")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ap, err := netip.ParseAddrPort(c.addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("-addr %q: want a loopback host:port", c.addr)
	}
	if c.duration <= 0 || c.duration > 2*time.Minute {
		return errors.New("-duration must be above 0 and at most 2m")
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	deff := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	var k counts
	stop := make(chan struct{})
	start := time.Now()
	c.end = start.Add(c.duration)
	time.AfterFunc(c.duration, func() { close(stop) })
	switch c.kind {
	case "bcrypt":
		def(&c.workers, 32)
		loops(c.workers, stop, func(i int) { passwordLoop(c, &k, stop, i, false) })
	case "bcrypt-nowait":
		def(&c.workers, 32)
		loops(c.workers, stop, func(i int) { noWaitLoop(c, &k, stop, i) })
	case "bcrypt-spread":
		def(&c.workers, 32)
		loops(c.workers, stop, func(i int) { passwordLoop(c, &k, stop, i, true) })
	case "argon2id":
		def(&c.workers, 40)
		loops(c.workers, stop, func(i int) { passwordLoop(c, &k, stop, i, true) })
	case "retained":
		def(&c.workers, 64)
		def(&c.size, 1<<20)
		err = retainedFlood(c, &k, stop)
	case "aliases":
		def(&c.workers, 2)
		def(&c.size, 4096)
		deff(&c.rate, 2000)
		err = aliasFlood(c, &k, stop)
	case "stalled":
		def(&c.workers, 2)
		def(&c.size, 64<<10)
		deff(&c.rate, 500)
		err = stalledFlood(c, &k, stop)
	case "preconnect-held", "preconnect-reconnect":
		def(&c.workers, 150)
		pause := time.Duration(0)
		if c.kind == "preconnect-held" {
			pause = time.Second
		}
		loops(c.workers, stop, func(i int) { preconnectLoop(c, &k, stop, pause) })
	case "dribble":
		def(&c.workers, 150)
		loops(c.workers, stop, func(i int) { dribbleLoop(c, &k, stop, i) })
	default:
		return fmt.Errorf("-kind %q: unknown", c.kind)
	}
	fmt.Printf("%s: %.1fs, %d workers: %d dials (%d failed), %d CONNACKs (%d refusals), %d closed by the broker, %d published\n",
		c.kind, time.Since(start).Seconds(), c.workers, k.dials.Load(), k.dialErrs.Load(), k.connacks.Load(),
		k.refused.Load(), k.closed.Load(), k.published.Load())
	return err
}

// loops runs f(i) for i in [0, n) concurrently and returns when all have.
func loops(n int, stop <-chan struct{}, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// dial connects to addr from src (nil: the default), with the flood's
// deadline for everything done on the connection.
func dial(c config, k *counts, src netip.Addr, stop <-chan struct{}) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	k.dials.Add(1)
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		k.dialErrs.Add(1)
		return nil, err
	}
	// Reads and writes end with the flood; the second after it lets a
	// write under way when it ends finish or fail as the broker makes it.
	_ = conn.SetDeadline(c.end.Add(time.Second))
	return conn, nil
}

// srcAddr is worker i's source address, 127.0.1.1 and up.
func srcAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%250)}) }

// noWaitLoop sends CONNECTs with a wrong password for c.user, closing each
// connection once its CONNECT is written, until stop.
func noWaitLoop(c config, k *counts, stop <-chan struct{}, i int) {
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: fmt.Sprintf("flood-%d", i), CleanStart: true,
		UsernameFlag: true, Username: c.user, PasswordFlag: true, Password: []byte("wrong-password")}
	buf, _ := p.Append(nil, packet.V311)
	for !stopped(stop) {
		conn, err := dial(c, k, netip.Addr{}, stop)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the backlog is full: try again
			continue
		}
		if _, err := conn.Write(buf); err != nil {
			k.closed.Add(1) // closed at accept before the write
		}
		_ = conn.Close() // at once, answered or not
	}
}

// passwordLoop sends CONNECTs with a wrong password until stop; spread
// uses a new username each time and worker i's own source address.
func passwordLoop(c config, k *counts, stop <-chan struct{}, i int, spread bool) {
	var src netip.Addr
	if spread {
		src = srcAddr(i)
	}
	for n := 0; !stopped(stop); n++ {
		user := c.user
		if spread {
			user = fmt.Sprintf("guess-%d-%d", i, n)
		}
		conn, err := dial(c, k, src, stop)
		if err != nil {
			time.Sleep(10 * time.Millisecond) // the backlog is full: try again
			continue
		}
		p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: fmt.Sprintf("flood-%d", i), CleanStart: true,
			UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte("wrong-password")}
		buf, _ := p.Append(nil, packet.V311)
		if _, err := conn.Write(buf); err == nil {
			if ack, err := packet.ReadPacket(conn, packet.V311, 0); err == nil {
				k.connacks.Add(1)
				if a, ok := ack.(*packet.Connack); ok && a.ReasonCode != packet.Success {
					k.refused.Add(1)
				}
			} else {
				k.closed.Add(1)
			}
		}
		_ = conn.Close() // refused: at once again
	}
}

// connectClient dials, sends CONNECT (anonymous) and waits for a
// successful CONNACK.
func connectClient(c config, k *counts, stop <-chan struct{}, v packet.Version, id string, props packet.Properties) (net.Conn, error) {
	conn, err := dial(c, k, netip.Addr{}, stop)
	if err != nil {
		return nil, err
	}
	p := &packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: id, CleanStart: true, KeepAlive: 0, Properties: props}
	buf, err := p.Append(nil, v)
	if err == nil {
		_, err = conn.Write(buf)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	ack, err := packet.ReadPacket(conn, v, 0)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	k.connacks.Add(1)
	if a, ok := ack.(*packet.Connack); !ok || a.ReasonCode != packet.Success {
		_ = conn.Close()
		return nil, fmt.Errorf("%s: CONNACK %v", id, ack)
	}
	return conn, nil
}

func write(conn net.Conn, p packet.Packet, v packet.Version) error {
	buf, err := p.Append(nil, v)
	if err != nil {
		return err
	}
	_, err = conn.Write(buf)
	return err
}

// paced calls f about rate times a second over workers goroutines until
// stop or an error.
func paced(workers int, rate float64, stop <-chan struct{}, f func(w, n int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	every := time.Duration(float64(time.Second) * float64(workers) / rate)
	for w := range workers {
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if err := f(w, n); err != nil {
					if !stopped(stop) {
						errs[w] = err
					}
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// retainedFlood stores c.retained retained messages of c.size bytes, then
// connects c.workers subscribers to them that never read, each
// subscribing again every second, until stop.
func retainedFlood(c config, k *counts, stop <-chan struct{}) error {
	pub, err := connectClient(c, k, stop, packet.V311, "flood-retainer", packet.Properties{})
	if err != nil {
		return err
	}
	payload := make([]byte, c.size)
	for i := range c.retained {
		if err := write(pub, &packet.Publish{QoS: 0, Retain: true, Topic: fmt.Sprintf("flood/ret/%d", i), Payload: payload}, packet.V311); err != nil {
			return err
		}
		k.published.Add(1)
	}
	defer pub.Close() // the retained messages stay: each run starts its own broker
	var wg sync.WaitGroup
	for i := range c.workers {
		wg.Go(func() {
			conn, err := connectClient(c, k, stop, packet.V311, fmt.Sprintf("flood-stalled-%d", i), packet.Properties{})
			if err != nil {
				return
			}
			defer conn.Close()
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096) // never read: keep the kernel's share small
			}
			for n := 1; !stopped(stop); n++ {
				sub := &packet.Subscribe{PacketID: uint16(n), Subscriptions: []packet.Subscription{{Filter: "flood/ret/#", QoS: 1}}}
				if write(conn, sub, packet.V311) != nil {
					k.closed.Add(1)
					return
				}
				select {
				case <-stop:
				case <-time.After(time.Second):
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// aliasFlood connects a 5.0 subscriber accepting 65535 topic aliases that
// reads everything, and c.workers publishers of distinct c.size-byte
// topics at c.rate messages a second, until stop.
func aliasFlood(c config, k *counts, stop <-chan struct{}) error {
	var props packet.Properties
	props.TopicAliasMaximum = 65535
	props.Set(packet.PropTopicAliasMaximum)
	sub, err := connectClient(c, k, stop, packet.V5, "flood-alias-sub", props)
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := write(sub, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "flood/alias/#"}}}, packet.V5); err != nil {
		return err
	}
	go func() { _, _ = io.Copy(io.Discard, sub) }() // reads until the deadline
	pubs := make([]net.Conn, c.workers)
	for w := range pubs {
		if pubs[w], err = connectClient(c, k, stop, packet.V311, fmt.Sprintf("flood-alias-pub-%d", w), packet.Properties{}); err != nil {
			return err
		}
		defer pubs[w].Close()
	}
	pad := make([]byte, c.size)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	return paced(c.workers, c.rate, stop, func(w, n int) error {
		topic := fmt.Sprintf("flood/alias/%d/%d/%s", w, n, pad)
		if len(topic) > c.size {
			topic = topic[:c.size]
		}
		k.published.Add(1)
		return write(pubs[w], &packet.Publish{Topic: topic, Payload: []byte("x")}, packet.V311)
	})
}

// stalledFlood connects a QoS 1 subscriber that never reads and c.workers
// publishers of c.size-byte messages at c.rate a second, until stop.
func stalledFlood(c config, k *counts, stop <-chan struct{}) error {
	sub, err := connectClient(c, k, stop, packet.V311, "flood-stalled-sub", packet.Properties{})
	if err != nil {
		return err
	}
	defer sub.Close()
	if tc, ok := sub.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if err := write(sub, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "flood/stall/#", QoS: 1}}}, packet.V311); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // the subscription is in place (never reading, no SUBACK is read)
	pubs := make([]net.Conn, c.workers)
	for w := range pubs {
		if pubs[w], err = connectClient(c, k, stop, packet.V311, fmt.Sprintf("flood-stall-pub-%d", w), packet.Properties{}); err != nil {
			return err
		}
		defer pubs[w].Close()
		go func() { _, _ = io.Copy(io.Discard, pubs[w]) }()
	}
	payload := make([]byte, c.size)
	return paced(c.workers, c.rate, stop, func(w, n int) error {
		k.published.Add(1)
		return write(pubs[w], &packet.Publish{Topic: fmt.Sprintf("flood/stall/%d", w), Payload: payload}, packet.V311)
	})
}

// declared16MiB is a CONNECT fixed header declaring 16 MiB - 1 of
// remaining length, and the first byte of the variable header.
var declared16MiB = []byte{0x10, 0xff, 0xff, 0xff, 0x07, 0x00}

// preconnectLoop declares a 16 MiB CONNECT, waits for the broker to close
// the connection, and opens another after pause, until stop.
func preconnectLoop(c config, k *counts, stop <-chan struct{}, pause time.Duration) {
	for !stopped(stop) {
		conn, err := dial(c, k, netip.Addr{}, stop)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if _, err := conn.Write(declared16MiB); err == nil {
			if _, err := io.Copy(io.Discard, conn); err == nil { // EOF: closed by the broker
				k.closed.Add(1)
			}
		}
		_ = conn.Close()
		if pause > 0 {
			select {
			case <-stop:
			case <-time.After(pause):
			}
		}
	}
}

// dribbleLoop sends a CONNECT one byte every 5 s, and opens another
// connection at once when the broker closes it, until stop.
func dribbleLoop(c config, k *counts, stop <-chan struct{}, i int) {
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: fmt.Sprintf("flood-dribble-%d", i), CleanStart: true}
	buf, _ := p.Append(nil, packet.V311)
	for !stopped(stop) {
		conn, err := dial(c, k, netip.Addr{}, stop)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, b := range buf {
			if _, err := conn.Write([]byte{b}); err != nil {
				k.closed.Add(1)
				break
			}
			select {
			case <-stop:
			case <-time.After(5 * time.Second):
			}
			if stopped(stop) {
				break
			}
		}
		_ = conn.Close()
	}
}
