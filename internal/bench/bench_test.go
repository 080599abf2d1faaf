package bench

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

func startBroker(t *testing.T) (host string, port int) {
	t.Helper()
	_, addr := mqtttest.StartBroker(t, broker.Options{})
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err = strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

func run(t *testing.T, c Config) *Report {
	t.Helper()
	c.Host, c.Port = startBroker(t)
	if c.Duration == 0 {
		c.Duration = 300 * time.Millisecond
	}
	c.Drain = 3 * time.Second
	r, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.Errors) > 0 {
		t.Errorf("errors: %v", r.Errors)
	}
	return r
}

// checkDelivery asserts a sane pub/sub report without loss.
func checkDelivery(t *testing.T, r *Report) {
	t.Helper()
	if r.Sent == 0 || r.Received == 0 {
		t.Fatalf("sent %d, received %d", r.Sent, r.Received)
	}
	if r.Lost != 0 || r.Duplicates != 0 || r.Foreign != 0 || r.Received != r.Expected {
		t.Errorf("lost %d, duplicates %d, foreign %d, received %d of %d", r.Lost, r.Duplicates, r.Foreign, r.Received, r.Expected)
	}
	if r.QoS > 0 && r.Acked != r.Sent {
		t.Errorf("acked %d of %d", r.Acked, r.Sent)
	}
	l := r.Latency
	if l.P50 <= 0 || l.P99 < l.P50 || l.P999 < l.P99 || l.Max < l.P999 || l.Mean <= 0 {
		t.Errorf("latency %+v", l)
	}
	if r.DeliveredRate <= 0 || r.SentRate <= 0 || r.Duration <= 0 {
		t.Errorf("rates %v %v over %v s", r.DeliveredRate, r.SentRate, r.Duration)
	}
}

func TestFaninQoS1LowRate(t *testing.T) {
	r := run(t, Config{Scenario: "fanin", QoS: 1, Clients: 4, Rate: 4000, PID: os.Getpid()})
	checkDelivery(t, r)
	if r.Publishers != 4 || r.Subscribers != 1 || r.Expected != r.Sent {
		t.Errorf("publishers %d subscribers %d expected %d sent %d", r.Publishers, r.Subscribers, r.Expected, r.Sent)
	}
	if r.OutOfOrder != 0 {
		t.Errorf("out of order %d", r.OutOfOrder)
	}
	if r.RSSAfter <= 0 || r.BrokerCPU <= 0 || r.CPUPerMillion <= 0 {
		t.Errorf("process figures: rss %d cpu %v per million %v", r.RSSAfter, r.BrokerCPU, r.CPUPerMillion)
	}
	if r.Sent > 4000 {
		t.Errorf("sent %d in 0.3 s at 4000/s", r.Sent)
	}
}

func TestFaninQoS2Window(t *testing.T) {
	checkDelivery(t, run(t, Config{Scenario: "fanin", QoS: 2, Window: 4, Clients: 2, Count: 500}))
}

func TestFaninQoS0Unpaced(t *testing.T) {
	r := run(t, Config{Scenario: "fanin", Clients: 2, Count: 20000, Size: 64})
	checkDelivery(t, r)
	if r.Sent != 20000 {
		t.Errorf("sent %d, want the count 20000", r.Sent)
	}
}

func TestFanout(t *testing.T) {
	r := run(t, Config{Scenario: "fanout", Clients: 3, Rate: 2000})
	checkDelivery(t, r)
	if r.Expected != 3*r.Sent {
		t.Errorf("expected %d for %d sent to 3 subscribers", r.Expected, r.Sent)
	}
}

func TestPairsV5(t *testing.T) {
	r := run(t, Config{Scenario: "pairs", Clients: 5, Rate: 5000, QoS: 1, Version: packet.V5})
	checkDelivery(t, r)
	if r.Publishers != 5 || r.Subscribers != 5 {
		t.Errorf("publishers %d subscribers %d", r.Publishers, r.Subscribers)
	}
}

func TestLatency(t *testing.T) {
	r := run(t, Config{Scenario: "latency", Rate: 1000})
	checkDelivery(t, r)
	if r.Sent < 200 || r.Sent > 310 {
		t.Errorf("sent %d in 0.3 s at 1000/s", r.Sent)
	}
}

func TestDurable(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		r := run(t, Config{Scenario: "durable", Clients: 3, Rate: 3000, Version: v})
		checkDelivery(t, r)
		if r.QoS != 1 {
			t.Errorf("durable QoS %d, want 1 by default", r.QoS)
		}
	}
}

// TestDurableSubscribers: --subscribers gives each durable publisher that
// many persistent subscribers, each owed every message of its publisher.
func TestDurableSubscribers(t *testing.T) {
	r := run(t, Config{Scenario: "durable", Clients: 2, Subscribers: 3, QoS: 2, Rate: 2000})
	checkDelivery(t, r)
	if r.Publishers != 2 || r.Subscribers != 6 || r.Expected != 3*r.Sent {
		t.Errorf("publishers %d subscribers %d expected %d sent %d, want 2, 6, 3x sent", r.Publishers, r.Subscribers, r.Expected, r.Sent)
	}
}

func TestConns(t *testing.T) {
	r := run(t, Config{Scenario: "conns", Clients: 50, PID: os.Getpid()})
	if r.Connections != 50 || r.ConnRate <= 0 {
		t.Errorf("connections %d at %v/s", r.Connections, r.ConnRate)
	}
	if r.RSSBefore <= 0 || r.RSSAfter <= 0 {
		t.Errorf("rss %d -> %d", r.RSSBefore, r.RSSAfter)
	}
}

func TestRetained(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		r := run(t, Config{Scenario: "retained", Count: 300, QoS: qos})
		if r.Sent != 300 || r.Received != 300 || r.Lost != 0 || r.Duplicates != 0 || r.TimeToAll <= 0 {
			t.Errorf("QoS %d: sent %d received %d lost %d dups %d time %v", qos, r.Sent, r.Received, r.Lost, r.Duplicates, r.TimeToAll)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for _, c := range []Config{
		{Scenario: "fanin", Host: "192.0.2.1"},
		{Scenario: "fanin", Host: "example.com"},
		{Scenario: "nope"},
		{Scenario: "fanin", Size: 8},
		{Scenario: "fanin", QoS: 3},
		{Scenario: "fanin", Duration: time.Hour},
		{Scenario: "fanin", Window: 70000},
		{Scenario: "conns", Clients: MaxClients + 1},
		{Scenario: "pairs", Subscribers: 2},
		{Scenario: "durable", Subscribers: maxSubscribers + 1},
		{Scenario: "durable", Clients: MaxClients / 10, Subscribers: 11},
	} {
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", c, err)
		}
	}
	c := Defaults(Config{Scenario: "fanin", Host: "192.0.2.1", AllowRemote: true})
	if err := c.validate(); err != nil {
		t.Errorf("allow-remote: %v", err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "127.1.2.3"} {
		if !isLoopback(h) {
			t.Errorf("%s is loopback", h)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := int64(1); i <= 100_000; i++ {
		h.record(i * 1000) // 1 us .. 100 ms
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.5, 50_000_000}, {0.99, 99_000_000}, {0.999, 99_900_000}, {1, 100_000_000}} {
		got := h.quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.01 || d > 0.01 {
			t.Errorf("q%v = %d, want %d within 1%%", tc.q, got, tc.want)
		}
	}
	for v := uint64(0); v < 1<<20; v = v*2 + 1 {
		low, width := histLow(histIndex(v))
		if v < low || v >= low+width {
			t.Errorf("%d in bucket [%d, %d)", v, low, low+width)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker(7, newClock())
	p := make([]byte, 16)
	for _, seq := range []uint32{0, 1, 3, 2, 2, 4} {
		stamp(p, 7, 1, seq, 0)
		tr.record(p, 1000)
	}
	stamp(p, 8, 1, 9, 0)
	tr.record(p, 1000)
	if tr.received.Load() != 5 || tr.dups != 1 || tr.ooo != 1 || tr.foreign != 1 || tr.gaps() != 0 {
		t.Errorf("received %d dups %d ooo %d foreign %d gaps %d", tr.received.Load(), tr.dups, tr.ooo, tr.foreign, tr.gaps())
	}
	stamp(p, 7, 1, 7, 0)
	tr.record(p, 1000)
	stamp(p, 7, 0, 1, 0)
	tr.record(p, 1000)
	if tr.gaps() != 3 {
		t.Errorf("gaps %d, want 3 (1/5, 1/6, 0/0)", tr.gaps())
	}
}
