package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/internal/bench"
	"github.com/petrel-mqtt/petrel/packet"
)

const benchUsage = `Usage: petrel bench SCENARIO [flags]

Loads an MQTT broker on a loopback address and reports delivered and sent
msg/s, loss, duplicates, reordering and latency percentiles (from send times
stamped in the payloads). Every load stops by itself (--duration, --count).

Scenarios:
  fanin     N publishers -> 1 wildcard subscriber (--clients publishers, default 8)
  fanout    1 publisher -> N subscribers (--clients subscribers, default 50)
  pairs     N publisher/subscriber pairs on distinct topics (default 100)
  latency   1 publisher -> 1 subscriber at a fixed rate (--rate, default 1000/s)
  conns     open N idle connections (default 1000): connection rate and, with
            --pid, the broker's memory per connection
  retained  publish --count retained messages (default 10000), subscribe to #
            and time their arrival; clears them afterwards
  durable   N pairs, QoS 1 (or 2) to persistent-session subscribers (default 10);
            --subscribers S gives each publisher S of them

Flags:
  --host HOST        broker host (default 127.0.0.1; loopback only)
  --port PORT        broker port (default 1883)
  --allow-remote     allow a host that is not a loopback address
  --sub-host HOST    where the subscribers connect (default --host): with
                     --sub-port, another node of a cluster than the
                     publishers' (fanin, fanout, pairs, latency, durable)
  --sub-port PORT    the subscribers' broker port (default --port)
  --settle D         wait D between the subscriptions and the first publish,
                     so that a cluster carries them to the publishers' node
                     (default 0)
  --version V        MQTT version: 3.1.1 (default), 5 or 3.1
  --qos QOS          0, 1 or 2 for publishers and subscriptions (default 0)
  --size BYTES       payload size, at least 16 (default 16)
  --window N         QoS 1/2 messages in flight per publisher (default 64)
  --rate MSGS        messages per second over all publishers (default unpaced)
  --duration D       publishing time (default 5s, at most 10m)
  --count N          stop after N messages over all publishers (default: duration only)
  --clients N        publishers, subscribers, pairs or connections (see above)
  --subscribers S    durable: persistent subscribers per publisher (default 1)
  --drain D          wait this long at most for stragglers (default 5s)
  --write-each       publishers write each PUBLISH with a write(2) of its own,
                     as simple clients do (default: up to 16 KiB per write)
  --transport T      tcp (default), tls, ws (WebSocket) or wss (WebSocket over
                     TLS); over TLS every connection makes a full handshake,
                     so conns measures handshakes per second
  --cafile FILE      PEM CA bundle to verify the broker's certificate (tls, wss;
                     default: the system's roots)
  --server-name NAME name the broker's certificate must carry (default --host)
  --ws-path PATH     WebSocket endpoint path (ws, wss; default /mqtt)
  --pid PID          the broker's process id: report its CPU time per million
                     delivered messages and its resident memory
  --json             print the report as JSON
`

// benchMain runs petrel bench, stopping early on SIGINT or SIGTERM.
func benchMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return benchCmd(ctx, args, stdout, stderr)
}

// benchCmd is petrel bench: it parses args, runs the scenario and prints
// the report. It returns the exit code.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const cmd = "petrel bench"
	var scenario string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var c bench.Config
	var version string
	var qos int
	var asJSON bool
	fs.StringVar(&c.Host, "host", "127.0.0.1", "")
	fs.IntVar(&c.Port, "port", 1883, "")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "")
	fs.StringVar(&c.SubHost, "sub-host", "", "")
	fs.IntVar(&c.SubPort, "sub-port", 0, "")
	fs.DurationVar(&c.Settle, "settle", 0, "")
	fs.StringVar(&version, "version", "3.1.1", "")
	fs.IntVar(&qos, "qos", 0, "")
	fs.IntVar(&c.Size, "size", 16, "")
	fs.IntVar(&c.Window, "window", 64, "")
	fs.Float64Var(&c.Rate, "rate", 0, "")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "")
	fs.IntVar(&c.Count, "count", 0, "")
	fs.IntVar(&c.Clients, "clients", 0, "")
	fs.IntVar(&c.Subscribers, "subscribers", 0, "")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "")
	fs.IntVar(&c.PID, "pid", 0, "")
	fs.BoolVar(&c.WriteEach, "write-each", false, "")
	fs.StringVar(&c.Transport, "transport", "tcp", "")
	fs.StringVar(&c.CAFile, "cafile", "", "")
	fs.StringVar(&c.ServerName, "server-name", "", "")
	fs.StringVar(&c.WSPath, "ws-path", "/mqtt", "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if scenario == "" && fs.NArg() > 0 {
		scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return exitUsage
		}
	}
	if scenario == "" {
		return usageError(stderr, cmd, benchUsage, "a scenario is required")
	}
	if fs.NArg() > 0 {
		return usageError(stderr, cmd, benchUsage, "unexpected argument %q", fs.Arg(0))
	}
	c.Scenario = scenario
	switch version {
	case "3.1.1", "311", "4", "mqttv311":
		c.Version = packet.V311
	case "5", "5.0", "mqttv5":
		c.Version = packet.V5
	case "3.1", "31", "3", "mqttv31":
		c.Version = packet.V31
	default:
		return usageError(stderr, cmd, benchUsage, "unknown MQTT version %q", version)
	}
	if qos < 0 || qos > 2 {
		return usageError(stderr, cmd, benchUsage, "QoS %d: must be 0, 1 or 2", qos)
	}
	c.QoS = byte(qos)
	r, err := bench.Run(ctx, c)
	if errors.Is(err, bench.ErrConfig) {
		return usageError(stderr, cmd, benchUsage, "%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return exitFailure
		}
	} else if err := r.WriteText(stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	return exitOK
}
