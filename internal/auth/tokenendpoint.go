package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TokenPath is where TokenHandler answers.
const TokenPath = "/oauth/token"

// APIClient is an API client of the token endpoint: its secret hash
// (petrel passwd), and the tenant and roles its tokens carry.
type APIClient struct {
	ID         string
	SecretHash string
	Tenant     string
	Roles      []string
}

// TokenEndpointConfig configures TokenHandler.
type TokenEndpointConfig struct {
	Clients    []APIClient
	Signer     *Signer
	TTL        time.Duration // default 1h
	Issuer     string
	Audience   string
	ScopeClaim string  // default mqttScope
	Rate       float64 // requests per second per remote address; default 1
	Burst      int     // default 5
}

// TokenHandler is the OAuth 2.0 client-credentials token endpoint (RFC
// 6749 section 4.4): POST /oauth/token with grant_type=client_credentials
// and the client's id and secret (HTTP Basic or form fields) returns
// {"access_token","token_type","expires_in"}, as the seeds' token API.
// Requests are rate-limited per remote address.
type TokenHandler struct {
	cfg   atomic.Pointer[tokenState]
	log   *slog.Logger
	now   func() time.Time
	dummy string // hash compared for unknown clients, so timing does not tell

	mu struct {
		sync.Mutex
		buckets map[string]*bucket
	}
}

type tokenState struct {
	c       TokenEndpointConfig
	clients map[string]APIClient
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the rate limiter's memory; when full it starts over.
const maxBuckets = 10_000

// NewTokenHandler checks c and returns the handler.
func NewTokenHandler(c TokenEndpointConfig, o Options) (*TokenHandler, error) {
	h := &TokenHandler{log: o.Logger, now: o.Now}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	dummy, err := HashBcrypt([]byte("petrel-dummy-secret"), 10)
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	h.mu.buckets = map[string]*bucket{}
	if err := h.Reload(c); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload replaces the configuration (clients, key, TTL).
func (h *TokenHandler) Reload(c TokenEndpointConfig) error {
	if c.Signer == nil {
		return errors.New("auth: token endpoint: no signing key")
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if c.Rate == 0 {
		c.Rate = 1
	}
	if c.Burst == 0 {
		c.Burst = 5
	}
	st := &tokenState{c: c, clients: map[string]APIClient{}}
	var errs []error
	for i, cl := range c.Clients {
		switch {
		case cl.ID == "":
			errs = append(errs, fmt.Errorf("auth: token endpoint client %d: no client_id", i))
		case !safeLevel(cl.Tenant):
			errs = append(errs, fmt.Errorf("auth: token endpoint client %s: tenant %q must be one topic level without + # / or NUL", cl.ID, cl.Tenant))
		}
		if err := CheckHash(cl.SecretHash); err != nil {
			errs = append(errs, fmt.Errorf("auth: token endpoint client %s: secret_hash: %w", cl.ID, err))
		}
		if _, dup := st.clients[cl.ID]; dup {
			errs = append(errs, fmt.Errorf("auth: token endpoint client %s listed twice", cl.ID))
		}
		st.clients[cl.ID] = cl
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	h.cfg.Store(st)
	return nil
}

// tokenResponse is the RFC 6749 section 5.1 answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (h *TokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path != TokenPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return
	}
	st := h.cfg.Load()
	if !h.take(remoteHost(r), st.c.Rate, st.c.Burst) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(1/st.c.Rate))))
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many requests")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "want application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	form := r.PostForm
	if form.Get("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials")
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the id and secret are form-encoded first.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "bad basic credentials")
			return
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	cl, ok := st.clients[id]
	hash := cl.SecretHash
	if !ok {
		hash = h.dummy
	}
	if err := VerifyPassword(hash, []byte(secret)); err != nil || !ok || id == "" {
		h.log.Info("auth: token request refused", "client_id", id, "remote", remoteHost(r))
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="petrel"`)
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	roles := cl.Roles
	if sc := form.Get("scope"); sc != "" {
		roles = strings.Fields(sc)
		for _, r := range roles {
			if !slices.Contains(cl.Roles, r) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "scope not granted to this client")
				return
			}
		}
	}
	tok, err := st.c.Signer.Issue(Claims{Tenant: cl.Tenant, Roles: roles, TTL: st.c.TTL, Issuer: st.c.Issuer,
		Audience: st.c.Audience, ScopeClaim: st.c.ScopeClaim, Now: h.now()})
	if err != nil {
		h.log.Error("auth: token endpoint cannot sign", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "cannot issue a token")
		return
	}
	h.log.Info("auth: token issued", "client_id", id, "tenant", cl.Tenant, "roles", roles, "remote", remoteHost(r))
	w.Header().Set("Content-Type", "application/json")
	// The write error, if any, is the client's connection going away.
	_ = json.NewEncoder(w).Encode(tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(st.c.TTL / time.Second)})
}

// take spends one token of key's bucket.
func (h *TokenHandler) take(key string, rate float64, burst int) bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.mu.buckets[key]
	if !ok {
		if len(h.mu.buckets) >= maxBuckets {
			h.mu.buckets = map[string]*bucket{}
		}
		b = &bucket{tokens: float64(burst), last: now}
		h.mu.buckets[key] = b
	}
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The write error, if any, is the client's connection going away.
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
