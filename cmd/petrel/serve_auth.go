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
// (SIGHUP or the admin API), all or nothing as far as it can: on an error
// nothing of the section changed, except when the token endpoint fails
// after the users and roles were swapped (the error says so). Once the
// roles are swapped, the broker decides the subscriptions it holds again
// under them (Broker.Reauthorize). It returns the settings that changed
// and need a restart: adding or removing the section, moving the token
// endpoint, password_checks.
func (s *security) reload(cfg *config.Config, b *broker.Broker) (restart []string, err error) {
	ac, ok := cfg.AuthConfig()
	if ok != (s.svc != nil) {
		return []string{"auth"}, nil
	}
	if !ok {
		return nil, nil
	}
	tc, on, err := cfg.TokenEndpointConfig()
	if err != nil {
		return nil, fmt.Errorf("auth.token_endpoint: %w", err)
	}
	if err := s.svc.Reload(ac); err != nil {
		return nil, err
	}
	b.Reauthorize()
	if ac.Checks != s.checks {
		restart = append(restart, "auth.password_checks")
	}
	switch {
	case on != (s.tokens != nil):
		restart = append(restart, "auth.token_endpoint.address")
	case on:
		if err := s.tokens.Reload(tc); err != nil {
			return restart, fmt.Errorf("auth.token_endpoint (users, roles and keys were reloaded): %w", err)
		}
	}
	return restart, nil
}

// close stops the token endpoint.
func (s *security) close() {
	if s.svc != nil {
		s.svc.Close()
	}
	if s.tokens != nil {
		s.tokens.Close()
	}
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
