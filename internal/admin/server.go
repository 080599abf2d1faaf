// Package admin is Petrel's admin HTTP listener: health probes for
// Kubernetes (/healthz, /readyz), the Prometheus handler (/metrics, given
// by its owner) and the REST API (/api/v1, docs/api/openapi.yaml) over a
// live broker. Who may do what is in auth.go and docs/security.md.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// DefaultAddress is where petrel serve listens for the admin API unless
// admin.address says otherwise.
const DefaultAddress = "127.0.0.1:9883"

// Bounds on what one HTTP client can make the listener hold.
const (
	// maxConns bounds the connections served at once; more wait in the
	// kernel's backlog.
	maxConns = 64
	// maxHeaderBytes bounds a request's line and headers: room for a
	// client id or topic of 65,535 bytes, percent-encoded.
	maxHeaderBytes = 256 << 10
	// maxBodyBytes bounds a request body (a publish).
	maxBodyBytes = 1 << 20
	// maxAuthChecks bounds the password and token checks running at
	// once: a bcrypt or argon2id check costs tens of milliseconds of CPU
	// and argon2id 64 MiB. Past it a request is answered 503 at once.
	maxAuthChecks     = 4
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
)

// MaxAuthChecks bounds the password and token checks running at once: a
// bcrypt or argon2id check costs tens of milliseconds of CPU, and
// argon2id 64 MiB. Past it a request is answered 503 (Retry-After: 1) at
// once.
const MaxAuthChecks = 4

// Options configure a Server.
type Options struct {
	// Broker is the broker the API reports on and acts on; required.
	Broker *broker.Broker
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Authenticator verifies credentials (HTTP basic: username and
	// password; Bearer: a JWT) as it verifies a CONNECT's. Nil: no
	// authentication is configured, and only loopback clients are
	// served (as administrators).
	Authenticator broker.Authenticator
	// OpenOnLoopback, with an Authenticator, serves loopback clients
	// without credentials as administrators too. Off by default: with
	// authentication configured, every client authenticates.
	OpenOnLoopback bool
	// OperatorTenant is the tenant whose principals see and act on every
	// tenant; a principal of any other tenant sees only its own.
	OperatorTenant string
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// Ready reports readiness for /readyz (nil: ready while the broker
	// serves a listener).
	Ready func() error
	// Reload runs the reload SIGHUP does; nil answers 501.
	Reload func(ctx context.Context) error
	// Cluster reports the cluster this node belongs to (GET
	// /api/v1/cluster); nil, one node without a cluster, answers 404.
	Cluster func(ctx context.Context) (*api.Cluster, error)
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is the admin HTTP listener. Create it with New, run it with
// Serve, stop it with Shutdown.
type Server struct {
	o        Options
	log      *slog.Logger
	srv      *http.Server
	mux      *http.ServeMux
	patterns []string
	started  time.Time
	// authSlots bounds the credential checks running at once.
	authSlots chan struct{}
	// scan serializes the walks of the broker's session map (lists):
	// each holds the broker's lock for one walk, and a client sending
	// lists in a loop must not make connecting clients queue behind one
	// walk after another.
	scan chan struct{}
}

// New returns a Server for o.
func New(o Options) (*Server, error) {
	if o.Broker == nil {
		return nil, errors.New("admin: no broker")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, log: o.Logger, started: o.Now(),
		authSlots: make(chan struct{}, MaxAuthChecks), scan: make(chan struct{}, 1)}
	s.mux = http.NewServeMux()
	s.routes()
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         o.TLS,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// routes registers every endpoint; docs/api/openapi.yaml lists the same
// (TestOpenAPIMatchesRoutes).
func (s *Server) routes() {
	s.handle("GET /healthz", open, s.healthz)
	s.handle("GET /readyz", open, s.readyz)
	s.handle("GET /metrics", operatorRead, s.metrics)
	s.handle("GET /api/v1/clients", read, s.listClients)
	// {client_id...}: a client id may hold any character, "/" (sent as
	// %2F) included.
	s.handle("GET /api/v1/clients/{client_id...}", read, s.getClient)
	s.handle("DELETE /api/v1/clients/{client_id...}", write, s.kickClient)
	s.handle("GET /api/v1/sessions", read, s.listSessions)
	s.handle("GET /api/v1/sessions/{client_id...}", read, s.getSession)
	s.handle("DELETE /api/v1/sessions/{client_id...}", write, s.deleteSession)
	s.handle("GET /api/v1/subscriptions", read, s.listSubscriptions)
	s.handle("GET /api/v1/retained", read, s.listRetained)
	s.handle("GET /api/v1/retained/{topic...}", read, s.getRetained)
	s.handle("DELETE /api/v1/retained/{topic...}", write, s.deleteRetained)
	s.handle("POST /api/v1/publish", write, s.publish)
	s.handle("GET /api/v1/stats", operatorRead, s.stats)
	s.handle("POST /api/v1/reload", operatorWrite, s.reload)
	// Every node and its connections, every tenant's: operator principals only.
	s.handle("GET /api/v1/cluster", operatorRead, s.cluster)
}

// Patterns returns the route patterns ("METHOD /path") the server serves.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }

// ServeHTTP serves the API (without the listener's connection bounds).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// Serve accepts connections on l until Shutdown, at most maxConns at
// once, with TLS when Options.TLS is set. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	l = netutil.LimitListener(l, maxConns)
	if s.o.TLS != nil {
		return s.srv.ServeTLS(l, "", "")
	}
	return s.srv.Serve(l)
}

// Shutdown stops the listener and waits for the requests in progress,
// or for ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
