package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/petrel-mqtt/petrel/internal/client"
	"github.com/petrel-mqtt/petrel/packet"
)

// Exit codes of petrel pub and petrel sub.
const (
	exitOK      = 0
	exitFailure = 1  // connection refused or lost, publish or subscribe failed
	exitUsage   = 2  // bad flags
	exitTimeout = 27 // sub -W elapsed (mosquitto_sub's MOSQ_ERR_TIMEOUT)
)

// clientFlagsUsage documents the flags clientFlags registers.
const clientFlagsUsage = `Connection:
  -h, --host HOST           broker host (default localhost)
  -p, --port PORT           broker port (default 1883, 8883 with TLS)
  -V, --protocol-version V  31 (mqttv31), 311 (mqttv311, default) or 5 (mqttv5)
  -i, --id ID               client id (default petrel-CMD-<random>)
  -u, --username USER       user name
  -P, --pw PASSWORD         password
  -k, --keepalive SECONDS   keepalive (default 60; 0 disables)
  -c, --disable-clean-session
                            persistent session (needs -i; with -V 5 the session
                            never expires)
  -d, --debug               log every packet sent and received to stderr
Will:
  --will-topic TOPIC        will topic
  --will-payload PAYLOAD    will payload
  --will-qos QOS            will QoS (0, 1, 2)
  --will-retain             retain the will
TLS:
  --tls                     connect with TLS, verifying against the system roots
  --cafile FILE             CA certificates (PEM) to verify the broker (implies --tls)
  --cert FILE, --key FILE   client certificate and key (PEM; implies --tls)
  --insecure                do not verify the broker's certificate or host name
WebSocket:
  --ws                      connect over WebSocket (with TLS: secure WebSocket;
                            default port 80, with TLS 443)
  --ws-path PATH            the WebSocket endpoint's path (default /mqtt)
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// clientFlags are the connection flags petrel pub and sub share.
type clientFlags struct {
	host, id, username, password, version string
	port, keepAlive, willQoS, qos         int
	persistent, debug, willRetain         bool
	willTopic, willPayload                string
	tls, insecure, ws                     bool
	caFile, certFile, keyFile, wsPath     string
}

// register defines the flags on fs, short and long names sharing a value.
func (f *clientFlags) register(fs *flag.FlagSet) {
	str := func(p *string, short, long, def string) {
		fs.StringVar(p, long, def, "")
		if short != "" {
			fs.StringVar(p, short, def, "")
		}
	}
	num := func(p *int, short, long string, def int) {
		fs.IntVar(p, long, def, "")
		if short != "" {
			fs.IntVar(p, short, def, "")
		}
	}
	boolean := func(p *bool, short, long string) {
		fs.BoolVar(p, long, false, "")
		if short != "" {
			fs.BoolVar(p, short, false, "")
		}
	}
	str(&f.host, "h", "host", "localhost")
	num(&f.port, "p", "port", 0)
	str(&f.version, "V", "protocol-version", "311")
	str(&f.id, "i", "id", "")
	str(&f.username, "u", "username", "")
	str(&f.password, "P", "pw", "")
	num(&f.keepAlive, "k", "keepalive", 60)
	boolean(&f.persistent, "c", "disable-clean-session")
	boolean(&f.debug, "d", "debug")
	num(&f.qos, "q", "qos", 0)
	str(&f.willTopic, "", "will-topic", "")
	str(&f.willPayload, "", "will-payload", "")
	num(&f.willQoS, "", "will-qos", 0)
	boolean(&f.willRetain, "", "will-retain")
	boolean(&f.tls, "", "tls")
	str(&f.caFile, "", "cafile", "")
	str(&f.certFile, "", "cert", "")
	str(&f.keyFile, "", "key", "")
	boolean(&f.insecure, "", "insecure")
	boolean(&f.ws, "", "ws")
	str(&f.wsPath, "", "ws-path", "/mqtt")
}

// parseFlags parses args into fs. It returns the exit code to end with and
// false when the command must stop: usage errors print the error and the
// usage (exit 2), -help prints the usage (exit 0).
func parseFlags(fs *flag.FlagSet, args []string, usage string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n%s", fs.Name(), fs.Arg(0), usage)
		return exitUsage, false
	}
	return 0, true
}

// usageError prints msg and the usage and returns exitUsage.
func usageError(stderr io.Writer, cmd, usage, msg string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n%s", cmd, fmt.Sprintf(msg, args...), usage)
	return exitUsage
}

// isSet reports whether any of names was given on the command line.
func isSet(fs *flag.FlagSet, names ...string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				set = true
			}
		}
	})
	return set
}

// parseVersion maps a -V value to a protocol version.
func parseVersion(s string) (packet.Version, error) {
	switch strings.ToLower(s) {
	case "31", "mqttv31":
		return packet.V31, nil
	case "311", "mqttv311":
		return packet.V311, nil
	case "5", "mqttv5":
		return packet.V5, nil
	}
	return 0, fmt.Errorf("protocol version %q: want 31, 311 or 5 (mqttv31, mqttv311, mqttv5)", s)
}

// options checks the flags and builds the client options. cmd names the
// command in the default client id. Errors are usage errors.
func (f *clientFlags) options(fs *flag.FlagSet, cmd string, stderr io.Writer) (client.Options, error) {
	var o client.Options
	v, err := parseVersion(f.version)
	if err != nil {
		return o, err
	}
	if f.qos < 0 || f.qos > 2 {
		return o, fmt.Errorf("QoS %d: want 0, 1 or 2", f.qos)
	}
	if f.keepAlive < 0 || f.keepAlive > math.MaxUint16 {
		return o, fmt.Errorf("keepalive %d: want 0 to 65535 seconds", f.keepAlive)
	}
	if f.persistent && f.id == "" {
		return o, errors.New("-c (persistent session) needs a client id (-i)")
	}
	useTLS := f.tls || f.caFile != "" || f.certFile != "" || f.keyFile != "" || f.insecure
	port := f.port
	if !isSet(fs, "p", "port") {
		switch {
		case f.ws && useTLS:
			port = 443
		case f.ws:
			port = 80
		case useTLS:
			port = 8883
		default:
			port = 1883
		}
	}
	if port <= 0 || port > math.MaxUint16 {
		return o, fmt.Errorf("port %d: want 1 to 65535", port)
	}
	id := f.id
	if id == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
		id = "petrel-" + cmd + "-" + hex.EncodeToString(b[:])
	}
	o = client.Options{
		Addr:       net.JoinHostPort(f.host, strconv.Itoa(port)),
		ClientID:   id,
		Version:    v,
		CleanStart: !f.persistent,
		KeepAlive:  time.Duration(f.keepAlive) * time.Second,
		Username:   f.username,
	}
	if isSet(fs, "P", "pw") {
		o.Password = []byte(f.password)
	}
	if f.persistent && v == packet.V5 {
		o.SessionExpiry = math.MaxUint32 // as mosquitto: -c with 5.0 keeps the session forever
	}
	if f.willTopic != "" {
		if f.willQoS < 0 || f.willQoS > 2 {
			return o, fmt.Errorf("will QoS %d: want 0, 1 or 2", f.willQoS)
		}
		o.Will = &packet.Will{Topic: f.willTopic, Payload: []byte(f.willPayload), QoS: byte(f.willQoS), Retain: f.willRetain}
	} else if isSet(fs, "will-payload", "will-qos", "will-retain") {
		return o, errors.New("--will-payload, --will-qos and --will-retain need --will-topic")
	}
	var tlsCfg *tls.Config
	if useTLS {
		if tlsCfg, err = f.tlsConfig(); err != nil {
			return o, err
		}
	}
	switch {
	case f.ws:
		if !strings.HasPrefix(f.wsPath, "/") {
			return o, fmt.Errorf("--ws-path %q must start with /", f.wsPath)
		}
		o.Dialer = wsDialer(o.Addr, f.wsPath, tlsCfg)
	case useTLS:
		d := &tls.Dialer{Config: tlsCfg}
		addr := o.Addr
		o.Dialer = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if f.debug {
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
					return slog.Attr{}
				}
				return a
			},
		}))
	}
	return o, nil
}

// wsDialer dials MQTT over WebSocket (subprotocol "mqtt", binary frames),
// over TLS when tlsCfg is set, and returns the stream as a net.Conn.
func wsDialer(addr, path string, tlsCfg *tls.Config) func(context.Context) (net.Conn, error) {
	scheme, hc := "ws", http.DefaultClient
	if tlsCfg != nil {
		scheme = "wss"
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	}
	url := scheme + "://" + addr + path
	return func(ctx context.Context) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}, HTTPClient: hc})
		if err != nil {
			return nil, fmt.Errorf("websocket %s: %w", url, err)
		}
		// The connection lives until closed, not as long as ctx.
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
}

// tlsConfig builds the TLS configuration from --cafile, --cert, --key and
// --insecure.
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: f.host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cafile %s: no PEM certificate found", f.caFile)
		}
		cfg.RootCAs = pool
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, errors.New("--cert and --key go together")
	}
	if f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
