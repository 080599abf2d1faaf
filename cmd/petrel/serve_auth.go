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
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/config"
)

// security is what petrel serve runs of the auth: section: the
// authenticator/authorizer and the optional token endpoint.
type security struct {
	log    *slog.Logger
	svc    *auth.Service       // nil without an auth: section
	checks auth.PasswordChecks // auth.password_checks as started
	tokens *auth.TokenHandler  // nil without a token endpoint
	srv    *http.Server
	addr   string
	done   chan struct{}
}

// startSecurity builds the Service from cfg and starts the token endpoint.
func startSecurity(cfg *config.Config, logger *slog.Logger) (*security, error) {
	s := &security{log: logger}
	ac, ok := cfg.AuthConfig()
	if !ok {
		return s, nil
	}
	svc, err := auth.New(ac, auth.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	s.svc, s.checks = svc, ac.Checks
	tc, on, err := cfg.TokenEndpointConfig()
	if err != nil || !on {
		return s, err
	}
	// One Checker for CONNECT passwords and API client secrets: one bound
	// on the CPU and memory that hashing takes.
	if s.tokens, err = auth.NewTokenHandler(tc, auth.Options{Logger: logger, Checker: svc.Checker()}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Auth.TokenEndpoint.Address)
	if err != nil {
		return nil, fmt.Errorf("auth.token_endpoint.address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(auth.TokenPath, s.tokens)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	s.addr = ln.Addr().String()
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("token endpoint stopped", "err", err)
		}
	}()
	logger.Info("token endpoint listening", "addr", s.addr, "path", auth.TokenPath)
	return s, nil
}

// apply puts the Service into the broker options.
func (s *security) apply(o *broker.Options) {
	if s.svc != nil {
		o.Authenticator, o.Authorizer = s.svc, s.svc
	}
}

// reload re-reads the users file, keys, roles and token endpoint clients
// (SIGHUP or the admin API), then has the broker decide the subscriptions
// it holds again under the new roles (Broker.Reauthorize). Adding or
// removing the auth: section, or moving the token endpoint, needs a
// restart. A refused users file, key or token endpoint setting is logged
// and returned.
func (s *security) reload(cfg *config.Config, b *broker.Broker) error {
	ac, ok := cfg.AuthConfig()
	if ok != (s.svc != nil) {
		s.log.Warn("auth: section added or removed; it takes effect after a restart")
		return nil
	}
	if !ok {
		return nil
	}
	if err := s.svc.Reload(ac); err != nil {
		s.log.Error("auth: reload refused; keeping the running users, roles and keys", "err", err)
		return fmt.Errorf("auth: %w", err)
	}
	s.log.Info("auth: users, roles and keys reloaded")
	if ac.Checks != s.checks {
		s.log.Warn("auth.password_checks changed; it takes effect after a restart")
	}
	b.Reauthorize()
	tc, on, err := cfg.TokenEndpointConfig()
	switch {
	case on != (s.tokens != nil):
		s.log.Warn("auth.token_endpoint.address changed; it takes effect after a restart")
	case err != nil:
		s.log.Error("auth: token endpoint reload refused", "err", err)
		return fmt.Errorf("auth.token_endpoint: %w", err)
	case on:
		if err := s.tokens.Reload(tc); err != nil {
			s.log.Error("auth: token endpoint reload refused", "err", err)
			return fmt.Errorf("auth.token_endpoint: %w", err)
		}
	}
	return nil
}

// close stops the token endpoint.
func (s *security) close() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.log.Debug("token endpoint shutdown", "err", err)
	}
	<-s.done
}
