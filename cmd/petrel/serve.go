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
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auditlog"
	"github.com/petrel-mqtt/petrel/internal/config"
	"github.com/petrel-mqtt/petrel/internal/fdtable"
	"github.com/petrel-mqtt/petrel/internal/heapfloor"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
)

// configPath is the file --config names, else PETREL_CONFIG's, else "".
func configPath(path string, environ []string) string {
	if path != "" {
		return path
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PETREL_CONFIG="); ok {
			path = v
		}
	}
	return path
}

// loadConfig reads the file at path (from configPath), or the defaults,
// with environment overrides; relative paths are made absolute against
// the file's folder, or the working directory without a file.
func loadConfig(path string, environ []string) (*config.Config, error) {
	if path != "" {
		return config.Load(path, environ)
	}
	c, err := config.Parse(nil, environ)
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	c.ResolvePaths(wd)
	return c, nil
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
	*path = configPath(*path, environ)
	if *dataDir != "" {
		// A flag's relative path is the working directory's, as usual.
		if abs, err := filepath.Abs(*dataDir); err == nil {
			*dataDir = abs
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
	var audit *auditlog.File
	if cfg.Log.AuditFile != "" {
		if audit, err = auditlog.Open(cfg.Log.AuditFile); err != nil {
			fmt.Fprintf(stderr, "petrel serve: %v\n", err)
			return 2
		}
		defer func() {
			if err := audit.Close(); err != nil {
				fmt.Fprintf(stderr, "petrel serve: closing the audit file: %v\n", err)
			}
		}()
	}
	level := new(slog.LevelVar)
	logger, err := newLogger(stderr, level, cfg.Log, audit)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	for _, w := range cfg.Warnings {
		logger.Warn("configuration: " + w)
	}
	if *path != "" {
		abs, _ := filepath.Abs(*path) // Load succeeded with it
		logger.Info("configuration loaded", "file", abs)
	}
	if audit != nil {
		logger.Info("audit file opened", "file", audit.Path())
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
	// closeStore closes the store last; in a cluster the journal closes
	// it (before the node).
	closeStore := func() error { return nil }
	if st != nil {
		closeStore = st.Close
		defer func() {
			if err := closeStore(); err != nil {
				logger.Error("closing the store", "err", err)
			}
		}()
		opts.Store = st
	}
	// The cluster node before the broker (New binds the broker to it),
	// closed after the broker's shutdown (deferred).
	var served atomic.Pointer[broker.Broker]
	node, err := startCluster(cfg, logger, func() int {
		if b := served.Load(); b != nil {
			return b.Stats().Clients
		}
		return -1
	})
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 1
	}
	if node != nil {
		defer func() {
			if err := node.Close(); err != nil {
				logger.Error("closing the cluster node", "err", err)
			}
		}()
		opts.Fabric = node
		// Persistent sessions live in the cluster's journal, retained
		// messages in this node's store (docs/clustering.md).
		j := node.Journal(st)
		closeStore = func() error { return nil }
		defer func() {
			if err := j.Close(); err != nil {
				logger.Error("closing the store", "err", err)
			}
		}()
		opts.Store = j
	}
	b, err := broker.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "petrel serve: %v\n", err)
		return 2
	}
	served.Store(b)

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
		logger.Info("petrel listening", "version", buildVersion(), "listener", lc.Name, "type", lc.Type, "addr", ln.Addr().String())
		go func() { errc <- b.Serve(listener.Limit(ln, lc.MaxConnections, lc.ConnectionRate)) }()
	}
	reloads := make(reloadRequests)
	adm, err := startAdmin(cfg, b, sec, lns, logger, reloads.do, len(cfg.Listeners), node)
	if err != nil {
		logger.Error("admin API failed to start", "err", err)
		shutdown(b, lns, logger)
		return 1
	}
	defer adm.close() // after the broker's shutdown: /readyz says so meanwhile
	if cfg.SysInterval > 0 {
		if err := b.StartSys(cfg.SysInterval, "petrel version "+version); err != nil {
			logger.Error("$SYS topics not started", "err", err)
		}
	}
	rl := &reloader{path: *path, environ: environ, overrides: overrides, b: b, lns: lns, level: level,
		sec: sec, audit: audit, adm: adm, log: logger}
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
			// A refusal is logged; the users file is re-read even when the
			// configuration is unchanged.
			cfg, _ = rl.reload("SIGHUP", cfg)
			continue
		case reply := <-reloads: // POST /api/v1/reload: the same as SIGHUP
			var err error
			cfg, err = rl.reload("admin API", cfg)
			reply <- err
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
	reserve := int64(c.MinFreeSpace)
	if reserve == 0 {
		reserve = -1 // diskstore: no reserve
	}
	st, err := diskstore.Open(c.DataDir, diskstore.Options{Sync: c.Sync, SyncInterval: c.SyncInterval,
		Logger: logger, SkipCorrupt: c.SkipCorrupt, MinFreeSpace: reserve})
	if err != nil {
		return nil, err
	}
	if err := st.Err(); err != nil {
		// Read-only until the disk has room: the broker serves, and
		// refuses what would need the store (docs/configuration.md).
		logger.Warn("store opened read-only: the disk is full; persistent sessions and QoS 1/2 messages for them are refused until there is room",
			"data_dir", c.DataDir, "err", err)
		return st, nil
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

// checkMain validates a configuration as petrel serve would at start
// (config.Check) and reports every problem at once.
func checkMain(args []string, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file to validate (also PETREL_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	*path = configPath(*path, environ)
	var cfg *config.Config
	var err error
	if *path == "" {
		cfg, err = loadConfig("", environ)
	} else {
		// The configuration read despite its problems, to check its
		// files too: every problem in one report.
		cfg, err = config.LoadAll(*path, environ)
	}
	if cfg != nil {
		err = errors.Join(err, cfg.Check())
	}
	name := *path
	if name == "" {
		name = "default configuration"
	}
	if cfg != nil {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "petrel check: warning: %s\n", w)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel check: %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners)\n", name, len(cfg.Listeners))
	return 0
}

// newLogger returns the logger of c writing to w, with the audit events
// copied to audit when it is not nil.
func newLogger(w io.Writer, level *slog.LevelVar, c config.Log, audit *auditlog.File) (*slog.Logger, error) {
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text":
		return slog.New(auditlog.Handler(slog.NewTextHandler(w, opts), audit)), nil
	case "json":
		return slog.New(auditlog.Handler(slog.NewJSONHandler(w, opts), audit)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Format)
}
