// Package bench is Petrel's MQTT load generator (petrel bench). It runs a
// scenario against any broker on a loopback address and reports delivered
// and sent rates, loss, duplicates, reordering and latency, counted from a
// header every publisher stamps into its payloads (run id, publisher id,
// sequence number, send time). Given the broker's process id it also reports
// the broker's CPU time per million delivered messages and its memory.
//
// The load generator speaks MQTT directly on package packet with lean
// connections (one reused encode buffer, PUBLISH parsed in place) so that it
// measures the broker rather than itself. Every load is bounded in time and
// in count and stops by itself.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// Scenarios lists the scenario names Run accepts.
var Scenarios = []string{"fanin", "fanout", "pairs", "latency", "conns", "retained", "durable"}

// Limits on a run, so that a load always stops by itself.
const (
	MaxDuration = 10 * time.Minute
	MaxClients  = 100_000
	// maxSubscribers bounds the durable scenario's subscribers per
	// publisher.
	maxSubscribers = 1000
	MaxCount       = 1_000_000_000
	MaxSize        = 16 << 20
)

// ErrConfig wraps every configuration error returned by Run.
var ErrConfig = errors.New("bench: invalid configuration")

// Config is one benchmark run. Zero fields take the scenario's defaults
// (see Defaults).
type Config struct {
	Scenario string
	Host     string // default 127.0.0.1; must be loopback unless AllowRemote
	Port     int    // default 1883
	// SubHost and SubPort are where the subscribers connect (pub/sub
	// scenarios): another node of a cluster than the publishers' Host and
	// Port. Default Host and Port.
	SubHost string
	SubPort int
	// Settle is how long the run waits between the subscribers' SUBACKs
	// (and the publishers' CONNACKs) and the first publish: time for a
	// cluster to carry the subscriptions to the publishers' node. 0: none.
	Settle time.Duration
	// AllowRemote permits a Host that is not a loopback address.
	AllowRemote bool
	Version     packet.Version // default 3.1.1
	QoS         byte
	Size        int           // payload bytes, at least 16 (the stamped header)
	Window      int           // QoS 1/2 messages in flight per publisher; default 64
	Rate        float64       // messages per second over all publishers; 0: as fast as possible
	Duration    time.Duration // publishing time; default 5s
	Count       int           // messages over all publishers (retained: messages; conns: connections); 0: bounded by Duration only
	Clients     int           // publishers (fanin), subscribers (fanout), pairs (pairs, durable), connections (conns)
	// Subscribers is how many persistent subscribers each durable
	// publisher's topic has (durable only; default 1).
	Subscribers int
	Drain       time.Duration // how long to wait for stragglers after publishing; default 5s
	PID         int           // broker process id for CPU and memory figures; 0: none
	// WriteEach makes publishers write every PUBLISH with a write(2) of
	// its own, as simple clients do; by default they gather up to 16 KiB
	// per write.
	WriteEach bool

	// Transport is what MQTT runs over: "tcp" (default), "tls", "ws"
	// (WebSocket) or "wss" (WebSocket over TLS). Over TLS every
	// connection makes a full handshake (no session resumption), so the
	// conns scenario measures handshakes.
	Transport string
	// CAFile is a PEM bundle to verify the broker's certificate with
	// (tls, wss); empty: the system's roots.
	CAFile string
	// ServerName is the name the broker's certificate must carry;
	// default Host.
	ServerName string
	// WSPath is the WebSocket endpoint's HTTP path (ws, wss); default
	// /mqtt.
	WSPath string

	tr *transport // made by Run from the fields above
}

// Defaults returns c with the scenario's defaults filled in.
func Defaults(c Config) Config {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 1883
	}
	if c.SubHost == "" {
		c.SubHost = c.Host
	}
	if c.SubPort == 0 {
		c.SubPort = c.Port
	}
	if c.Version == 0 {
		c.Version = packet.V311
	}
	if c.Size == 0 {
		c.Size = payloadHeader
	}
	if c.Window == 0 {
		c.Window = 64
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 5 * time.Second
	}
	if c.Transport == "" {
		c.Transport = "tcp"
	}
	if c.WSPath == "" {
		c.WSPath = "/mqtt"
	}
	switch c.Scenario {
	case "durable":
		if c.QoS == 0 {
			c.QoS = 1
		}
		if c.Subscribers == 0 {
			c.Subscribers = 1
		}
	case "latency":
		if c.Rate == 0 {
			c.Rate = 1000
		}
	case "retained":
		if c.Count == 0 {
			c.Count = 10_000
		}
	}
	if c.Clients == 0 {
		switch c.Scenario {
		case "fanin":
			c.Clients = 8
		case "fanout":
			c.Clients = 50
		case "pairs":
			c.Clients = 100
		case "durable":
			c.Clients = 10
		case "conns":
			c.Clients = 1000
		default:
			c.Clients = 1
		}
	}
	return c
}

func (c *Config) validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("%w: unknown scenario %q (want one of %v)", ErrConfig, c.Scenario, Scenarios)
	case c.Version != packet.V311 && c.Version != packet.V5 && c.Version != packet.V31:
		return fmt.Errorf("%w: protocol version %v", ErrConfig, c.Version)
	case c.QoS > 2:
		return fmt.Errorf("%w: QoS %d", ErrConfig, c.QoS)
	case c.Size < payloadHeader || c.Size > MaxSize:
		return fmt.Errorf("%w: payload size %d: must be %d..%d (the first %d bytes carry run, publisher, sequence and send time)", ErrConfig, c.Size, payloadHeader, MaxSize, payloadHeader)
	case c.Window < 1 || c.Window > 65535:
		return fmt.Errorf("%w: window %d: must be 1..65535", ErrConfig, c.Window)
	case c.Rate < 0:
		return fmt.Errorf("%w: negative rate", ErrConfig)
	case c.Duration <= 0 || c.Duration > MaxDuration:
		return fmt.Errorf("%w: duration %v: must be in (0, %v]", ErrConfig, c.Duration, MaxDuration)
	case c.Drain <= 0 || c.Drain > MaxDuration:
		return fmt.Errorf("%w: drain %v: must be in (0, %v]", ErrConfig, c.Drain, MaxDuration)
	case c.Count < 0 || c.Count > MaxCount:
		return fmt.Errorf("%w: count %d: must be 0..%d", ErrConfig, c.Count, MaxCount)
	case c.Clients < 1 || c.Clients > MaxClients:
		return fmt.Errorf("%w: clients %d: must be 1..%d", ErrConfig, c.Clients, MaxClients)
	case c.Scenario == "fanin" && c.Clients > 65535, c.Scenario == "pairs" && c.Clients > 65535, c.Scenario == "durable" && c.Clients > 65535:
		return fmt.Errorf("%w: at most 65535 publishers", ErrConfig)
	case c.Subscribers < 0 || c.Subscribers > maxSubscribers, c.Subscribers > 1 && c.Scenario != "durable":
		return fmt.Errorf("%w: subscribers %d: must be 1..%d, and only for durable", ErrConfig, c.Subscribers, maxSubscribers)
	case c.Scenario == "durable" && c.Clients*c.Subscribers > MaxClients:
		return fmt.Errorf("%w: %d pairs of %d subscribers: more than %d subscribers", ErrConfig, c.Clients, c.Subscribers, MaxClients)
	case c.Scenario == "durable" && c.QoS == 0:
		return fmt.Errorf("%w: durable needs QoS 1 or 2", ErrConfig)
	case c.Scenario == "retained" && c.Count == 0:
		return fmt.Errorf("%w: retained needs a count", ErrConfig)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("%w: port %d", ErrConfig, c.Port)
	case c.SubPort < 1 || c.SubPort > 65535:
		return fmt.Errorf("%w: subscribers' port %d", ErrConfig, c.SubPort)
	case c.Settle < 0 || c.Settle > time.Minute:
		return fmt.Errorf("%w: settle %v: must be in [0, 1m]", ErrConfig, c.Settle)
	case (c.SubHost != c.Host || c.SubPort != c.Port) && (c.Scenario == "conns" || c.Scenario == "retained"):
		return fmt.Errorf("%w: %s has no separate subscribers' broker (--sub-host, --sub-port)", ErrConfig, c.Scenario)
	}
	for _, h := range []string{c.Host, c.SubHost} {
		if !c.AllowRemote && !isLoopback(h) {
			return fmt.Errorf("%w: host %q is not a loopback address (use --allow-remote to load a remote broker)", ErrConfig, h)
		}
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Latency holds latency figures in microseconds, from the send time stamped
// in the payload to its arrival at a subscriber.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Report is the result of one run. Rates are per second; sizes in bytes.
type Report struct {
	Scenario    string  `json:"scenario"`
	Broker      string  `json:"broker"`               // host:port of the publishers (and of every client by default)
	SubBroker   string  `json:"sub_broker,omitempty"` // host:port of the subscribers when elsewhere
	Version     string  `json:"version"`
	QoS         byte    `json:"qos"`
	Size        int     `json:"size"`
	Window      int     `json:"window"`
	Rate        float64 `json:"rate"`
	WriteEach   bool    `json:"write_each"`
	Transport   string  `json:"transport"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`

	Duration      float64  `json:"duration_s"`               // publishing time
	Elapsed       float64  `json:"elapsed_s"`                // first send to last delivery
	Sent          int64    `json:"sent"`                     // PUBLISH packets written
	Acked         int64    `json:"acked"`                    // QoS 1/2 publishes completed by the broker
	Expected      int64    `json:"expected"`                 // deliveries owed to subscribers for what was sent
	Received      int64    `json:"received"`                 // unique deliveries
	Lost          int64    `json:"lost"`                     // expected - received = gaps + tail
	LostGaps      int64    `json:"lost_gaps"`                // missing below a publisher's highest sequence received
	LostTail      int64    `json:"lost_tail"`                // missing above it: still queued when the drain ended, or dropped at the tail
	Duplicates    int64    `json:"duplicates"`               // deliveries of a (publisher, sequence) already received
	OutOfOrder    int64    `json:"out_of_order"`             // deliveries after a later message of the same publisher
	Foreign       int64    `json:"foreign"`                  // deliveries not stamped by this run
	SentRate      float64  `json:"sent_per_s"`               // sent / duration
	DeliveredRate float64  `json:"delivered_per_s"`          // received / elapsed
	Latency       Latency  `json:"latency"`                  // over all unique deliveries
	Connections   int      `json:"connections"`              // conns: connections opened
	ConnRate      float64  `json:"conn_per_s"`               // conns: CONNECT/CONNACK completed per second
	TimeToAll     float64  `json:"time_to_all_s"`            // retained: SUBSCRIBE to the last retained message
	BrokerCPU     float64  `json:"broker_cpu_s"`             // broker user+system time during the run
	CPUPerMillion float64  `json:"broker_cpu_s_per_million"` // broker CPU seconds per million deliveries
	RSSBefore     int64    `json:"broker_rss_before"`
	RSSAfter      int64    `json:"broker_rss_after"`
	RSSPerConn    float64  `json:"broker_rss_per_conn"` // conns: (after - before) / connections
	ClientCPU     float64  `json:"bench_cpu_s"`         // this load generator's CPU time
	Errors        []string `json:"errors,omitempty"`
}

// Run runs the scenario c against the broker and returns its report. The
// run is bounded by c.Duration plus c.Drain (and connection set-up); ctx
// cancels it early. An error means the run could not be set up (bad
// configuration, broker unreachable); failures during the load are counted
// and listed in Report.Errors.
func Run(ctx context.Context, c Config) (*Report, error) {
	c = Defaults(c)
	if err := c.validate(); err != nil {
		return nil, err
	}
	var err error
	if c.tr, err = newTransport(&c); err != nil {
		return nil, err
	}
	var rb [2]byte
	_, _ = rand.Read(rb[:]) // crypto/rand.Read never fails
	run := binary.BigEndian.Uint16(rb[:])
	r := &Report{
		Scenario: c.Scenario, Broker: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Version: c.Version.String(),
		QoS: c.QoS, Size: c.Size, Window: c.Window, Rate: c.Rate, WriteEach: c.WriteEach, Transport: c.Transport,
	}
	if c.SubHost != c.Host || c.SubPort != c.Port {
		r.SubBroker = net.JoinHostPort(c.SubHost, strconv.Itoa(c.SubPort))
	}
	switch c.Scenario {
	case "conns":
		return r, runConns(ctx, &c, run, r)
	case "retained":
		return r, runRetained(ctx, &c, run, r)
	}
	return r, runPubSub(ctx, &c, run, r)
}
