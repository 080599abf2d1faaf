// Command petrel is the Petrel MQTT broker and its tools.
//
//	petrel serve [--listen 127.0.0.1:1883]   run the broker
//	petrel version                           print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Petrel, an MQTT broker.

Usage:
  petrel serve [flags]    run the broker (petrel serve -h for flags)
  petrel version          print the version

With no flags, petrel serve listens on 127.0.0.1:1883 and allows anonymous
clients (loopback only).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "petrel", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "petrel: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:1883", "TCP address to listen on for MQTT")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	queue := fs.Int("queue-messages", 50_000, "per-client outbound queue limit in messages")
	queueBytes := fs.Int("queue-bytes", 0, "per-client outbound queue limit in bytes (0: none)")
	policy := fs.String("queue-policy", broker.PolicyDropNew, "full queue policy: drop-new or drop-oldest")
	inflight := fs.Int("max-inflight", 1024, "outbound QoS 1/2 messages in flight per client")
	maxPacket := fs.Int("max-packet-size", 16<<20, "largest inbound packet in bytes")
	anon := fs.Bool("allow-anonymous-remote", false, "allow anonymous clients on a non-loopback address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "petrel serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	if !*anon && !isLoopback(*listen) {
		fmt.Fprintf(stderr, "petrel serve: %s is not a loopback address; without authentication configured, pass --allow-anonymous-remote to accept anonymous clients there\n", *listen)
		return 2
	}
	b, err := broker.New(broker.Options{
		Logger:        logger,
		QueueMessages: *queue,
		QueueBytes:    *queueBytes,
		QueuePolicy:   *policy,
		MaxInflight:   *inflight,
		MaxPacketSize: *maxPacket,
	})
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 1
	}
	logger.Info("petrel listening", "version", version, "listener", "tcp", "addr", ln.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- b.Serve(ln) }()
	select {
	case err := <-errc:
		logger.Error("listener failed", "err", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	if err := <-errc; !errors.Is(err, broker.ErrServerClosed) {
		logger.Error("listener", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// isLoopback reports whether addr (host:port) only listens on loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
