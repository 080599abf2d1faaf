// Command wsflood measures how long honest MQTT-over-WebSocket clients
// take to connect to a ws listener while an upgrade flood runs against
// it: a fixed number of connections held open from several loopback
// addresses, each having sent nothing (or, with -partial, the first line
// of an upgrade request), plus new ones at a fixed rate, each kept for
// longer than the listener's upgrade timeout.
//
//	go run ./bench/wsflood -addr 127.0.0.1:18080
//
// It prints the median, p90, p99 and maximum of the honest clients' time
// from dial to CONNACK. Flood traffic goes to loopback only: -addr must be
// a loopback address, and the sources are 127.0.1.x.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/petrel-mqtt/petrel/packet"
)

// partialRequest is the first line of an upgrade request, never finished.
var partialRequest = []byte("GET /mqtt HTTP/1.1\r\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "the broker's ws listener (loopback)")
	partial := flag.Bool("partial", false, "flood connections send the first line of an upgrade request")
	held := flag.Int("held", 1100, "flood connections opened at the start")
	rate := flag.Float64("rate", 120, "new flood connections per second after that")
	hold := flag.Duration("hold", 12*time.Second, "how long the flood keeps each connection")
	srcs := flag.Int("srcs", 32, "flood source addresses, 127.0.1.1 and up")
	n := flag.Int("n", 50, "honest clients")
	every := flag.Duration("every", 200*time.Millisecond, "between honest clients' starts")
	timeout := flag.Duration("timeout", 30*time.Second, "an honest client's limit")
	flag.Parse()
	if err := run(*addr, *partial, *held, *rate, *hold, *srcs, *n, *every, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "wsflood:", err)
		os.Exit(1)
	}
}

func run(addr string, partial bool, held int, rate float64, hold time.Duration, srcs, n int, every, timeout time.Duration) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("-addr %q: want a loopback host:port", addr)
	}
	if srcs < 1 || srcs > 250 || rate <= 0 {
		return errors.New("-srcs must be 1 to 250 and -rate above 0")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { flood(addr, partial, held, rate, hold, srcs, stop) })
	time.Sleep(2 * time.Second) // the held connections reach the broker

	took := make([]time.Duration, n)
	errs := make([]error, n)
	var honest sync.WaitGroup
	for i := range n {
		honest.Go(func() { took[i], errs[i] = connect(addr, i, timeout) })
		time.Sleep(every)
	}
	honest.Wait()
	close(stop)
	wg.Wait()

	var ok []time.Duration
	failed := 0
	for i, d := range took {
		if errs[i] != nil {
			failed++
			fmt.Fprintf(os.Stderr, "client %d: %v after %v\n", i, errs[i], d)
			continue
		}
		ok = append(ok, d)
	}
	if len(ok) == 0 {
		return fmt.Errorf("all %d honest clients failed", n)
	}
	slices.Sort(ok)
	q := func(p float64) time.Duration { return ok[min(len(ok)-1, int(p*float64(len(ok))))] }
	fmt.Printf("honest clients: %d connected, %d failed; dial to CONNACK: median %v p90 %v p99 %v max %v\n",
		len(ok), failed, q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond),
		q(0.99).Round(time.Millisecond), ok[len(ok)-1].Round(time.Millisecond))
	return nil
}

// flood opens held connections, then one every 1/rate, each from the next
// of srcs source addresses, sends nothing (partial: the first line of an
// upgrade request) on each and closes it after hold (or at stop).
func flood(addr string, partial bool, held int, rate float64, hold time.Duration, srcs int, stop <-chan struct{}) {
	type conn struct {
		c    net.Conn
		born time.Time
	}
	var conns []conn
	defer func() {
		for _, c := range conns {
			_ = c.c.Close() // the flood is over
		}
	}()
	open := func(i int) {
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i%srcs)})
		d := net.Dialer{Timeout: time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return // the backlog is full: the flood goes on
		}
		if partial {
			if _, err := c.Write(partialRequest); err != nil {
				_ = c.Close() // closed by the broker already
				return
			}
		}
		conns = append(conns, conn{c, time.Now()})
	}
	for i := range held {
		open(i)
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := held; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for len(conns) > 0 && time.Since(conns[0].born) > hold {
			_ = conns[0].c.Close() // kept past the listener's upgrade timeout
			conns = conns[1:]
		}
		open(i)
	}
}

// connect upgrades a WebSocket connection to addr, completes an MQTT
// 3.1.1 CONNECT over it, and returns the time from dial to CONNACK.
func connect(addr string, i int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		return time.Since(start), err
	}
	c := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer c.Close()
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: fmt.Sprintf("honest-%d", i), CleanStart: true, KeepAlive: 60}
	buf, err := p.Append(nil, packet.V311)
	if err != nil {
		return 0, err
	}
	if _, err := c.Write(buf); err != nil {
		return time.Since(start), err
	}
	ack, err := packet.ReadPacket(c, packet.V311, 0)
	if err != nil {
		return time.Since(start), err
	}
	if a, ok := ack.(*packet.Connack); !ok || a.ReasonCode != packet.Success {
		return time.Since(start), fmt.Errorf("got %v, want a successful CONNACK", ack)
	}
	return time.Since(start), nil
}
