package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// TestCrashQoS2FullRateExactlyOnce publishes QoS 2 streams at full rate
// (a window of unacknowledged publishes per publisher) to a persistent
// subscriber that goes offline and comes back at random moments, while
// petrel serve (disk store, sync always) is killed with SIGKILL several
// times and restarted. Then, with the publishers stopped and the
// subscriber online:
//   - the backlog drains within the time the publishing took (plus a
//     grace for the reconnection): delivery keeps pace with what the
//     broker accepts;
//   - every message the broker acknowledged (PUBREC: on disk, DESIGN.md
//     section 3) arrives;
//   - none arrives twice [MQTT-4.3.3-2] (the subscriber, as a receiver
//     must, recognises a resent PUBLISH by its packet id while it awaits
//     the PUBREL, and nothing else);
//   - each topic's messages arrive in the order they were published
//     [MQTT-4.6.0-1].
func TestCrashQoS2FullRateExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it several times")
	}
	const (
		publishers = 2
		window     = 64
		kills      = 3
		grace      = 3 * time.Second // reconnecting after the last restart
	)
	dir, bin := buildPetrel(t)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, "log: {level: warn}\nstore: {data_dir: "+filepath.Join(dir, "data")+"}\n"+
		"limits: {queue_messages: 1000000}\nlisteners: [{type: tcp, address: '127.0.0.1:0'}]\n")
	var addr atomic.Value // the running broker's address ("" while it is down)
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "serve", "--config", cfg, "--log-level", "info")
		logs := startServe(t, cmd)
		addr.Store(waitFor(t, logs, 1)["tcp-0"])
		return cmd
	}
	current := func() string { return addr.Load().(string) }

	cmd := start()
	sub := &crashSubscriber{id: "crash-q2-sub", got: map[string][]int{}, awaiting: map[uint16]bool{}}
	if err := sub.session(current(), true, nil); err != nil { // subscribes, then goes offline
		t.Fatal(err)
	}
	done := make(chan struct{})
	online := make(chan struct{}) // closed for the drain: the subscriber stays online
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sub.run(current, online, done)
	}()
	pubs := make([]*crashPublisher, publishers)
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	began := time.Now()
	for i := range pubs {
		pubs[i] = &crashPublisher{topic: fmt.Sprintf("crash/q2/p%d", i), window: window}
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			pubs[i].run(current, stop)
		}()
	}
	for range kills {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond) // SIGKILL mid-stream, at a random moment
		addr.Store("")
		_ = cmd.Process.Signal(syscall.SIGKILL) // it cannot have exited on its own
		_ = cmd.Wait()                          // killed: the error says so
		cmd = start()
	}
	time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
	close(stop)
	pwg.Wait()
	published := time.Since(began)
	close(online)

	acked := 0
	for _, p := range pubs {
		acked += len(p.acked())
	}
	if acked == 0 {
		t.Fatal("nothing was acknowledged; the test tested nothing")
	}
	drainStart := time.Now()
	complete := func() bool {
		for _, p := range pubs {
			if !sub.hasAll(p.topic, p.acked()) {
				return false
			}
		}
		return true
	}
	for !complete() && time.Since(drainStart) < time.Minute {
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(drainStart)
	sub.close()
	close(done)
	wg.Wait()

	for _, p := range pubs {
		got := sub.delivered(p.topic)
		seen := make(map[int]int, len(got))
		for i, n := range got {
			seen[n]++
			if seen[n] > 1 {
				t.Fatalf("%s: message %d delivered twice [MQTT-4.3.3-2]", p.topic, n)
			}
			if i > 0 && n < got[i-1] {
				t.Fatalf("%s: message %d after %d, out of order", p.topic, n, got[i-1])
			}
		}
		for _, n := range p.acked() {
			if seen[n] == 0 {
				t.Fatalf("%s: acknowledged message %d lost (%d acknowledged, %d delivered, %d published)", p.topic, n, len(p.acked()), len(got), p.sent())
			}
		}
		t.Logf("%s: %d published, %d acknowledged, %d delivered once each, in order", p.topic, p.sent(), len(p.acked()), len(got))
	}
	t.Logf("published for %v across %d kills; the backlog drained in %v", published.Round(time.Millisecond), kills, drained.Round(time.Millisecond))
	if drained > published+grace {
		t.Fatalf("the drain took %v, longer than the publishing (%v) and %v: delivery does not keep pace", drained, published, grace)
	}
}

// crashConn is one MQTT 3.1.1 connection of the crash test's clients.
type crashConn struct {
	nc net.Conn
	r  *bufio.Reader
	mu sync.Mutex // w
	w  *bufio.Writer
}

// dialCrash connects with a CONNECT for id (clean or resuming), or fails.
func dialCrash(addr, id string, clean bool) (*crashConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("broker down")
	}
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	c := &crashConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriterSize(nc, 64<<10)}
	if err := c.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: clean, KeepAlive: 30}, true); err != nil {
		nc.Close()
		return nil, err
	}
	p, err := c.read(5 * time.Second)
	if ack, ok := p.(*packet.Connack); err != nil || !ok || ack.ReasonCode != packet.Success {
		nc.Close()
		return nil, fmt.Errorf("no CONNACK: %v", err)
	}
	return c, nil
}

func (c *crashConn) send(p packet.Packet, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf, err := p.Append(nil, packet.V311)
	if err != nil {
		return err
	}
	if _, err := c.w.Write(buf); err != nil {
		return err
	}
	if flush {
		return c.w.Flush()
	}
	return nil
}

func (c *crashConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Flush()
}

func (c *crashConn) read(d time.Duration) (packet.Packet, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	return packet.ReadPacket(c.r, packet.V311, 0)
}

// crashPublisher publishes sequence numbers on its topic at QoS 2 with up
// to window publishes unacknowledged, reconnecting (clean) whenever the
// broker goes away; a number counts as acknowledged when PUBREC says so.
// It never publishes a number twice.
type crashPublisher struct {
	topic  string
	window int
	mu     sync.Mutex
	ack    []int
	next   int
}

func (p *crashPublisher) run(addr func() string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := dialCrash(addr(), "crash-pub-"+p.topic, true)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		p.connection(c, stop)
		c.nc.Close()
	}
}

// connection publishes on c until it fails or stop is closed.
func (p *crashPublisher) connection(c *crashConn, stop <-chan struct{}) {
	slots := make(chan struct{}, p.window)
	var mu sync.Mutex
	seqOf := map[uint16]int{} // packet id -> number, until PUBCOMP
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			pk, err := c.read(10 * time.Second)
			if err != nil {
				return
			}
			switch pk := pk.(type) {
			case *packet.Pubrec:
				mu.Lock()
				n, ok := seqOf[pk.PacketID]
				mu.Unlock()
				if ok && !pk.ReasonCode.IsError() {
					p.mu.Lock()
					p.ack = append(p.ack, n)
					p.mu.Unlock()
				}
				if c.send(&packet.Pubrel{PacketID: pk.PacketID}, false) != nil {
					return
				}
			case *packet.Pubcomp:
				mu.Lock()
				delete(seqOf, pk.PacketID)
				mu.Unlock()
				<-slots
			}
			if c.r.Buffered() == 0 && c.flush() != nil {
				return
			}
		}
	}()
	pid := uint16(0)
	for {
		select {
		case slots <- struct{}{}:
		default: // the window is full: what was written goes out, then wait
			if c.flush() != nil {
				<-readerDone
				return
			}
			select {
			case <-stop:
				c.nc.Close()
				<-readerDone
				return
			case <-readerDone:
				return
			case slots <- struct{}{}:
			}
		}
		mu.Lock()
		for {
			pid = pid%65535 + 1
			if _, used := seqOf[pid]; !used {
				break
			}
		}
		p.mu.Lock()
		n := p.next
		p.next++
		p.mu.Unlock()
		seqOf[pid] = n
		mu.Unlock()
		if c.send(&packet.Publish{Topic: p.topic, QoS: 2, PacketID: pid, Payload: []byte(strconv.Itoa(n))}, false) != nil {
			<-readerDone
			return
		}
	}
}

func (p *crashPublisher) acked() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.ack...)
}

func (p *crashPublisher) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// crashSubscriber is a persistent QoS 2 subscriber to crash/q2/#. Like any
// receiver it keeps, across connections, the packet ids it answered with
// PUBREC and has not seen PUBREL for: a PUBLISH under one of them is the
// same message again and is not delivered again (method B of 4.3.3).
type crashSubscriber struct {
	id       string
	mu       sync.Mutex
	got      map[string][]int // topic -> numbers delivered, in order
	awaiting map[uint16]bool
	conn     *crashConn // the connection now, nil between them
	closed   bool       // close was called: no new connection
}

// session runs one connection: when first, it subscribes and disconnects;
// otherwise it reads and acknowledges until the connection fails, or until
// offline fires (it disconnects then, keeping its session).
func (s *crashSubscriber) session(addr string, first bool, offline <-chan time.Time) error {
	c, err := dialCrash(addr, s.id, false)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("closed")
	}
	s.conn = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	if first {
		if err := c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "crash/q2/#", QoS: 2}}}, true); err != nil {
			return err
		}
		if p, err := c.read(5 * time.Second); err != nil || p.Type() != packet.SUBACK {
			return fmt.Errorf("no SUBACK: %v", err)
		}
		return c.send(&packet.Disconnect{}, true)
	}
	if offline != nil {
		quit := make(chan struct{})
		defer close(quit)
		go func() {
			select {
			case <-offline: // the broker closes the connection after DISCONNECT
				_ = c.send(&packet.Disconnect{}, true) // a failure ends the read loop anyway
			case <-quit:
			}
		}()
	}
	for {
		pk, err := c.read(10 * time.Second)
		if err != nil {
			return err // the end of the connection: offline, killed broker, or close
		}
		switch pk := pk.(type) {
		case *packet.Publish:
			s.mu.Lock()
			if !s.awaiting[pk.PacketID] { // a new message: deliver it, once
				n, _ := strconv.Atoi(string(pk.Payload))
				s.got[pk.Topic] = append(s.got[pk.Topic], n)
				s.awaiting[pk.PacketID] = true
			}
			s.mu.Unlock()
			err = c.send(&packet.Pubrec{PacketID: pk.PacketID}, false)
		case *packet.Pubrel:
			s.mu.Lock()
			delete(s.awaiting, pk.PacketID)
			s.mu.Unlock()
			err = c.send(&packet.Pubcomp{PacketID: pk.PacketID}, false)
		}
		if err == nil && c.r.Buffered() == 0 {
			err = c.flush()
		}
		if err != nil {
			return err
		}
	}
}

// run keeps the subscriber going online for random spells and offline in
// between until online is closed (then it stays online), and until done.
func (s *crashSubscriber) run(addr func() string, online, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		var offline <-chan time.Time
		select {
		case <-online:
		default:
			offline = time.After(time.Duration(150+rand.IntN(300)) * time.Millisecond)
		}
		if s.session(addr(), false, offline) != nil && offline == nil {
			time.Sleep(20 * time.Millisecond) // the broker is down or restarting
			continue
		}
		select { // offline for a while, unless draining
		case <-online:
		case <-done:
			return
		case <-time.After(time.Duration(100+rand.IntN(250)) * time.Millisecond):
		}
	}
}

// close ends the connection and any later one.
func (s *crashSubscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		s.conn.nc.Close()
	}
}

func (s *crashSubscriber) delivered(topic string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.got[topic]...)
}

// hasAll reports whether every number in want was delivered on topic.
func (s *crashSubscriber) hasAll(topic string, want []int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got[topic]
	if len(got) < len(want) {
		return false
	}
	seen := make(map[int]bool, len(got))
	for _, n := range got {
		seen[n] = true
	}
	for _, n := range want {
		if !seen[n] {
			return false
		}
	}
	return true
}
