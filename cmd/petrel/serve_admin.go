package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/cluster"
	"github.com/petrel-mqtt/petrel/internal/config"
	"github.com/petrel-mqtt/petrel/internal/listener"
	"github.com/petrel-mqtt/petrel/internal/metrics"
)

// adminListener is petrel serve's admin HTTP listener (admin: section).
type adminListener struct {
	log  *slog.Logger
	srv  *admin.Server
	tls  *listener.ServerTLS // nil without admin.tls
	done chan struct{}
}

// startAdmin starts the admin listener admin.address asks for; nil when
// it is off. When the default address is taken (a second broker on the
// host with the defaults) it logs a warning and runs without; a
// configured address that cannot be bound is an error, as a listener's
// is. node is the cluster node, nil without one: GET /api/v1/cluster and
// the petrel_cluster_* metrics read it.
func startAdmin(cfg *config.Config, b *broker.Broker, sec *security, lns []*listener.Listener, logger *slog.Logger,
	reload func(context.Context) error, listeners int, node *cluster.Node) (*adminListener, error) {
	ac := cfg.Admin
	if ac.Address == "" {
		return nil, nil
	}
	a := &adminListener{log: logger, done: make(chan struct{})}
	o := admin.Options{
		Broker: b, Logger: logger, OpenOnLoopback: ac.OpenOnLoopback, OperatorTenant: cfg.AdminOperatorTenant(),
		Reload: reload, Cluster: clusterReport(node),
		Ready: func() error {
			if n := b.Serving(); n < listeners {
				return fmt.Errorf("%d of %d listeners serving", n, listeners)
			}
			return nil
		},
	}
	if sec.svc != nil {
		o.Authenticator = sec.svc
	}
	reg, err := newMetrics(cfg, b, sec, lns, node)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	o.Metrics = metrics.Handler(reg)
	if ac.TLS.CertFile != "" {
		t, err := listener.NewServerTLS(ac.TLS.CertFile, ac.TLS.KeyFile, ac.TLS.MinVersion)
		if err != nil {
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
		a.tls, o.TLS = t, t.Config()
	}
	srv, err := admin.New(o)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	ln, err := net.Listen("tcp", ac.Address)
	if err != nil {
		if ac.Address == config.DefaultAdminAddress {
			logger.Warn("admin API off: its default address is taken; set admin.address", "addr", ac.Address, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("admin.address: %w", err)
	}
	scheme := "http"
	if a.tls != nil {
		scheme = "https"
	}
	logger.Info("admin API listening", "addr", ln.Addr().String(), "scheme", scheme)
	go func() {
		defer close(a.done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin API stopped", "err", err)
		}
	}()
	return a, nil
}

// reloadCertificates re-reads admin.tls's certificate (SIGHUP).
func (a *adminListener) reloadCertificates() {
	if a == nil || a.tls == nil {
		return
	}
	if err := a.tls.Reload(); err != nil {
		a.log.Error("admin certificate reload failed; keeping the old certificate", "err", err)
		return
	}
	a.log.Info("admin certificate reloaded")
}

// close stops the listener and waits for the requests in progress (at
// most 5 seconds).
func (a *adminListener) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.log.Debug("admin API shutdown", "err", err)
	}
	<-a.done
}

// reloadRequests carries the admin API's reload requests to the goroutine
// that owns the configuration (serveMain's loop), which answers on the
// channel sent.
type reloadRequests chan chan error

// do asks for a reload and waits for its outcome, or for ctx.
func (r reloadRequests) do(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
