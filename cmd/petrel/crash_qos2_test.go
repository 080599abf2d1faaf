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

// crashConn is one MQTT connection of the crash tests' clients (3.1.1
// unless dialed with another version).
type crashConn struct {
	nc net.Conn
	r  *bufio.Reader
	v  packet.Version
	mu sync.Mutex // w
	w  *bufio.Writer
}

// dialCrash connects with a CONNECT for id (clean or resuming), or fails.
func dialCrash(addr, id string, clean bool) (*crashConn, error) {
	c, _, err := dialConnect(addr, &packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30})
	return c, err
}

// dialConnect connects with p (3.1.1 unless p.Version says otherwise) and
// returns the connection and its CONNACK, or fails (refused included).
func dialConnect(addr string, p *packet.Connect) (*crashConn, *packet.Connack, error) {
	if addr == "" {
		return nil, nil, fmt.Errorf("broker down")
	}
	if p.Version == 0 {
		p.Version = packet.V311
	}
	p.ProtocolName = "MQTT"
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &crashConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), v: p.Version, w: bufio.NewWriterSize(nc, 64<<10)}
	if err := c.send(p, true); err != nil {
		nc.Close()
		return nil, nil, err
	}
	// A cluster's CONNECT claims the session (2 s at most) and may adopt
	// it from the other nodes: give it more than a local one.
	pk, err := c.read(10 * time.Second)
	ack, ok := pk.(*packet.Connack)
	if err != nil || !ok || ack.ReasonCode != packet.Success {
		nc.Close()
		if ok {
			return nil, ack, fmt.Errorf("CONNACK %v", ack.ReasonCode)
		}
		return nil, nil, fmt.Errorf("no CONNACK: %v", err)
	}
	return c, ack, nil
}

func (c *crashConn) send(p packet.Packet, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf, err := p.Append(nil, c.v)
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
	return packet.ReadPacket(c.r, c.v, 0)
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

// crashSubscriber is a persistent subscriber, by default a 3.1.1 one to
// crash/q2/# at QoS 2. Like any receiver it keeps, across connections, the
// packet ids it answered with PUBREC and has not seen PUBREL for: a QoS 2
// PUBLISH under one of them is the same message again and is not delivered
// again (method B of 4.3.3). A QoS 1 PUBLISH is delivered each time it
// comes (its checker decides whether a repeat is allowed).
type crashSubscriber struct {
	id      string
	v       packet.Version        // 0: 3.1.1; 5.0 asks for a session expiry of an hour
	user    string                // username (password ctlPassword); none when empty
	filters []packet.Subscription // nil: crash/q2/# at QoS 2

	mu       sync.Mutex
	got      map[string][]int // topic -> numbers delivered, in order
	awaiting map[uint16]bool
	conn     *crashConn // the connection now, nil between them
	closed   bool       // close was called: no new connection
	resumed  int        // connections after the first that found the session (session present)
	lost     int        // connections after the first that found none
}

// connectPacket is the subscriber's CONNECT: clean start false, and for
// 5.0 a session that outlives the connection [MQTT-3.1.2-23].
func (s *crashSubscriber) connectPacket() *packet.Connect {
	p := &packet.Connect{Version: s.v, ClientID: s.id, KeepAlive: 30}
	if s.v == packet.V5 {
		p.Properties.SessionExpiryInterval = 3600
		p.Properties.Set(packet.PropSessionExpiryInterval)
	}
	if s.user != "" {
		p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, s.user, true, []byte(ctlPassword)
	}
	return p
}

// session runs one connection: when first, it subscribes and disconnects;
// otherwise it reads and acknowledges until the connection fails, or until
// offline fires (it disconnects then, keeping its session).
func (s *crashSubscriber) session(addr string, first bool, offline <-chan time.Time) error {
	c, ack, err := dialConnect(addr, s.connectPacket())
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
	if !first {
		if ack.SessionPresent {
			s.resumed++
		} else {
			s.lost++
		}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	if first {
		filters := s.filters
		if filters == nil {
			filters = []packet.Subscription{{Filter: "crash/q2/#", QoS: 2}}
		}
		if err := c.send(&packet.Subscribe{PacketID: 1, Subscriptions: filters}, true); err != nil {
			return err
		}
		p, err := c.read(5 * time.Second)
		if err != nil {
			return fmt.Errorf("no SUBACK: %v", err)
		}
		sa, ok := p.(*packet.Suback)
		if !ok || len(sa.ReasonCodes) != len(filters) {
			return fmt.Errorf("got %s, want SUBACK for %d filters", p.Type(), len(filters))
		}
		for i, rc := range sa.ReasonCodes {
			if rc.IsError() {
				return fmt.Errorf("SUBACK refused %s: %v", filters[i].Filter, rc)
			}
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
			n, _ := strconv.Atoi(string(pk.Payload))
			var reply packet.Packet
			s.mu.Lock()
			switch pk.QoS {
			case 2:
				if !s.awaiting[pk.PacketID] { // a new message: deliver it, once
					s.got[pk.Topic] = append(s.got[pk.Topic], n)
					s.awaiting[pk.PacketID] = true
				}
				reply = &packet.Pubrec{PacketID: pk.PacketID}
			case 1:
				s.got[pk.Topic] = append(s.got[pk.Topic], n)
				reply = &packet.Puback{PacketID: pk.PacketID}
			default:
				s.got[pk.Topic] = append(s.got[pk.Topic], n)
			}
			s.mu.Unlock()
			if reply != nil {
				err = c.send(reply, false)
			}
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

// isClosed reports whether close was called.
func (s *crashSubscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// sessions returns how many connections after the first found no session
// (session present 0) and how many resumed it.
func (s *crashSubscriber) sessions() (lost, resumed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost, s.resumed
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
