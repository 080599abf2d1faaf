package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/config"
	"github.com/petrel-mqtt/petrel/internal/fdtable"
	"github.com/petrel-mqtt/petrel/internal/heapfloor"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
)

// loadConfig reads the file named by --config (or PETREL_CONFIG), or the
// defaults, with environment overrides.
func loadConfig(path string, environ []string) (*config.Config, error) {
	if path == "" {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, "PETREL_CONFIG="); ok {
				path = v
			}
		}
	}
	if path == "" {
		return config.Parse(nil, environ)
	}
	return config.Load(path, environ)
}

func serveMain(args []string, environ []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file (default: none; also PETREL_CONFIG)")
	listen := fs.String("listen", "", "listen on this TCP address instead of the configured listeners")
	logLevel := fs.String("log-level", "", "override log.level: debug, info, warn, error")
	logFormat := fs.String("log-format", "", "override log.format: text or json")
	ephemeral := fs.Bool("ephemeral", false, "keep everything in memory (store.type: memory): nothing survives a restart")
	dataDir := fs.String("data", "", "override store.data_dir")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "petrel serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	overrides := func(c *config.Config) {
		if *listen != "" {
			c.Listeners = []config.Listener{{Name: "tcp", Type: "tcp", Address: *listen}}
		}
		if *logLevel != "" {
			c.Log.Level = *logLevel
		}
		if *logFormat != "" {
			c.Log.Format = *logFormat
		}
		if *ephemeral {
			c.Store.Type = "memory"
		}
		if *dataDir != "" {
			c.Store.DataDir = *dataDir
		}
	}
	cfg, err := loadConfig(*path, environ)
	if err == nil {
		overrides(cfg)
		err = errors.Join(cfg.Validate(), cfg.Check())
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	level := new(slog.LevelVar)
	logger, err := newLogger(stderr, level, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration: " + w)
	}
	opts := cfg.BrokerOptions()
	opts.Logger = logger
	opts.RawTransport = true // raw accept, raw reads and writes, parking (internal/transport)
	sec, err := startSecurity(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	defer sec.close()
	sec.apply(&opts)
	st, err := openStore(cfg.Store, logger)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 1
	}
	if st != nil {
		defer func() {
			if err := st.Close(); err != nil {
				logger.Error("closing the store", "err", err)
			}
		}()
		opts.Store = st
	}
	b, err := broker.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv("GOGC") == "" {
		if f := heapfloor.Start(uint64(cfg.Runtime.GCHeapFloor), 100); f != nil {
			logger.Debug("garbage collector heap floor", "bytes", uint64(cfg.Runtime.GCHeapFloor))
			defer f.Stop()
		}
	}
	// Before the listeners: the table's one growth waits for an RCU grace
	// period (milliseconds), which would otherwise stall an accept at
	// each doubling while clients connect.
	if n, err := fdtable.Reserve(cfg.Runtime.FDTableSize); err != nil {
		logger.Warn("sizing the descriptor table failed; it grows as connections come", "err", err)
	} else if n > 0 {
		logger.Debug("descriptor table sized", "descriptors", n)
	}
	var lns []*listener.Listener
	errc := make(chan error, len(cfg.Listeners))
	for i, lc := range cfg.Listeners {
		ln, err := listener.Listen(ctx, cfg.ListenerConfig(i), logger)
		if err != nil {
			logger.Error("listener failed to start", "listener", lc.Name, "err", err)
			shutdown(b, lns, logger)
			return 1
		}
		lns = append(lns, ln)
		logger.Info("petrel listening", "version", version, "listener", lc.Name, "type", lc.Type, "addr", ln.Addr().String())
		go func() { errc <- b.Serve(listener.Limit(ln, lc.MaxConnections, lc.ConnectionRate)) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-errc:
			logger.Error("listener stopped", "err", err)
			shutdown(b, lns, logger)
			return 1
		case <-hup:
			cfg = reload(*path, environ, overrides, cfg, b, lns, level, logger)
			sec.reload(cfg, b) // the users file is re-read even when the configuration is unchanged
			continue
		case <-ctx.Done():
		}
		break
	}
	if !shutdown(b, lns, logger) {
		return 1
	}
	logger.Info("stopped")
	return 0
}

// openStore opens the configured store: nil for memory only.
func openStore(c config.Store, logger *slog.Logger) (*diskstore.Store, error) {
	if c.Type == "memory" {
		logger.Warn("store: memory only; sessions and retained messages do not survive a restart")
		return nil, nil
	}
	st, err := diskstore.Open(c.DataDir, diskstore.Options{Sync: c.Sync, SyncInterval: c.SyncInterval,
		Logger: logger, SkipCorrupt: c.SkipCorrupt})
	if err != nil {
		return nil, err
	}
	logger.Info("store opened", "data_dir", c.DataDir, "sync", c.Sync)
	return st, nil
}

// shutdown stops the broker and its listeners; it reports success.
func shutdown(b *broker.Broker, lns []*listener.Listener, logger *slog.Logger) bool {
	logger.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok := true
	if err := b.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "err", err)
		ok = false
	}
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			logger.Debug("closing listener", "listener", ln.Name(), "err", err)
		}
	}
	return ok
}

// reload re-reads the configuration on SIGHUP: certificates are reloaded,
// the log level and the limits applied (limits.*: new connections and
// sessions get them), and every other changed key is logged as needing a
// restart. A bad file is logged and the running configuration kept.
func reload(path string, environ []string, overrides func(*config.Config), old *config.Config,
	b *broker.Broker, lns []*listener.Listener, level *slog.LevelVar, logger *slog.Logger) *config.Config {
	logger.Info("SIGHUP: reloading configuration", "file", path)
	next, err := loadConfig(path, environ)
	if err == nil {
		overrides(next)
		err = errors.Join(next.Validate(), next.Check())
	}
	if err != nil {
		logger.Error("reload refused; keeping the running configuration", "err", err)
		return old
	}
	for _, w := range next.Warnings {
		logger.Warn("configuration: " + w)
	}
	for _, ln := range lns {
		if t := ln.Config().Type; t == "tls" || t == "wss" {
			if err := ln.ReloadCertificates(); err != nil {
				logger.Error("certificate reload failed; keeping the old certificate", "listener", ln.Name(), "err", err)
			} else {
				logger.Info("certificates reloaded", "listener", ln.Name())
			}
		}
	}
	if next.Log.Level != old.Log.Level {
		if err := level.UnmarshalText([]byte(next.Log.Level)); err == nil {
			logger.Info("log level changed", "from", old.Log.Level, "to", next.Log.Level)
		}
	}
	if err := b.SetLimits(next.BrokerOptions()); err != nil {
		logger.Error("new limits refused; keeping the running ones", "err", err)
		next.Limits = old.Limits
	}
	for _, k := range changedKeys(old, next) {
		switch {
		case k == "log.level":
		case k == "auth": // applied by security.reload
		case strings.HasPrefix(k, "limits."):
			logger.Info("limit changed", "key", k)
		default:
			logger.Warn("setting changed; it takes effect after a restart", "key", k)
		}
	}
	return next
}

// changedKeys lists the yaml key paths whose values differ.
func changedKeys(a, b *config.Config) []string {
	var out []string
	var walk func(x, y reflect.Value, path string)
	walk = func(x, y reflect.Value, path string) {
		if x.Kind() == reflect.Struct {
			for i := 0; i < x.NumField(); i++ {
				name := strings.Split(x.Type().Field(i).Tag.Get("yaml"), ",")[0]
				if name == "" || name == "-" {
					continue
				}
				p := name
				if path != "" {
					p = path + "." + name
				}
				walk(x.Field(i), y.Field(i), p)
			}
			return
		}
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			out = append(out, path)
		}
	}
	walk(reflect.ValueOf(*a), reflect.ValueOf(*b), "")
	return out
}

func checkMain(args []string, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file to validate (also PETREL_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path, environ)
	if err == nil {
		err = cfg.Check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel check: %v\n", err)
		return 1
	}
	name := *path
	if name == "" {
		name = "default configuration"
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "petrel check: warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners)\n", name, len(cfg.Listeners))
	return 0
}

func newLogger(w io.Writer, level *slog.LevelVar, c config.Log) (*slog.Logger, error) {
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Format)
}
