package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
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
	Rate       float64 // requests per second per client address; default 1
	Burst      int     // default 5
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client address (ParseTrustedProxies); a request from any other
	// peer is keyed on the peer, whatever its headers say.
	TrustedProxies []netip.Prefix
}

// TokenHandler is the OAuth 2.0 client-credentials token endpoint (RFC
// 6749 section 4.4): POST /oauth/token with grant_type=client_credentials
// and the client's id and secret (HTTP Basic or form fields) returns
// {"access_token","token_type","expires_in"}, as the seeds' token API.
// Requests are rate-limited per client address (behind a trusted proxy,
// the address its X-Forwarded-For names); secrets are checked by a
// Checker, whose failure limits apply per client id and per address.
type TokenHandler struct {
	cfg    atomic.Pointer[tokenState]
	log    *slog.Logger
	now    func() time.Time
	checks *Checker
	events *ratelog.Limiter // refused requests, one line per address per interval
	// buckets are the request rate limits per client address (an IPv6
	// /64), at most maxBuckets, the least recently used forgotten beyond.
	buckets *lru.Cache[netip.Addr, *rate.Limiter]
}

type tokenState struct {
	c       TokenEndpointConfig
	clients map[string]APIClient
	dummy   string // hash checked for unknown clients, so timing does not tell
}

// maxBuckets bounds the rate limiter's memory.
const maxBuckets = 10_000

// tokenAttemptPrefix keeps the client ids' failure limits apart from
// MQTT usernames' in a shared Checker (no MQTT string holds NUL
// [MQTT-1.5.4-2]).
const tokenAttemptPrefix = "\x00token:"

// NewTokenHandler checks c and returns the handler.
func NewTokenHandler(c TokenEndpointConfig, o Options) (*TokenHandler, error) {
	h := &TokenHandler{log: o.Logger, now: o.Now, checks: o.Checker}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.checks == nil {
		h.checks = NewChecker(PasswordChecks{}, h.now)
	}
	h.events = ratelog.New(h.log, ratelog.Options{})
	// lru.New fails only for a size below 1.
	h.buckets, _ = lru.New[netip.Addr, *rate.Limiter](maxBuckets)
	if err := h.Reload(c); err != nil {
		return nil, err
	}
	return h, nil
}

// Audit events of the token endpoint (ratelog.AuditKey).
const (
	AuditTokenIssued  = "token.issued"
	AuditTokenRefused = "token.refused"
)

// refused logs a refused token request at INFO, at most one line per
// client address per interval (ratelog); the client id the request
// named is cut to maxPrincipalLen bytes, since the client chose it.
func (h *TokenHandler) refused(addr netip.Addr, id, reason string) {
	if len(id) > maxPrincipalLen {
		id = id[:maxPrincipalLen]
	}
	h.events.Log(slog.LevelInfo, ratelog.IPKey(addr), "auth: token request refused", ratelog.AuditKey, AuditTokenRefused,
		"client_id", id, "remote", addr, "reason", reason)
}

// Close reports the refusals held back by the rate limit and stops its
// reports; the handler keeps working.
func (h *TokenHandler) Close() { h.events.Close() }

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
	var hashes []string
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
		hashes = append(hashes, cl.SecretHash)
		if _, dup := st.clients[cl.ID]; dup {
			errs = append(errs, fmt.Errorf("auth: token endpoint client %s listed twice", cl.ID))
		}
		st.clients[cl.ID] = cl
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	dummy, err := dummyHash(hashes)
	if err != nil {
		return err
	}
	st.dummy = dummy
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
	addr, _ := clientAddr(r, st.c.TrustedProxies)
	if !h.take(addr, st.c.Rate, st.c.Burst) {
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
	attempt := Attempt{Name: tokenAttemptPrefix + id, Addr: addr}
	var err error
	if ok {
		err = h.checks.Check(r.Context(), cl.SecretHash, []byte(secret), attempt)
	} else {
		err = h.checks.checkDummy(r.Context(), st.dummy, []byte(secret), attempt)
	}
	switch {
	case errors.Is(err, ErrThrottled):
		h.refused(addr, id, "too many failures")
		w.Header().Set("Retry-After", strconv.Itoa(h.retryAfterFailures()))
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many failed requests")
		return
	case errors.Is(err, ErrBusy):
		h.refused(addr, id, "password checks busy")
		w.Header().Set("Retry-After", "1")
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "busy, try again")
		return
	case err != nil:
		h.refused(addr, id, "wrong client secret or unknown client")
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
	tok, err := st.c.Signer.Issue(Claims{Tenant: cl.Tenant, ClientID: id, Roles: roles, TTL: st.c.TTL, Issuer: st.c.Issuer,
		Audience: st.c.Audience, ScopeClaim: st.c.ScopeClaim, Now: h.now()})
	if err != nil {
		h.log.Error("auth: token endpoint cannot sign", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "cannot issue a token")
		return
	}
	h.log.Info("auth: token issued", ratelog.AuditKey, AuditTokenIssued, "client_id", id, "tenant", cl.Tenant, "roles", roles, "remote", addr)
	w.Header().Set("Content-Type", "application/json")
	// The write error, if any, is the client's connection going away.
	_ = json.NewEncoder(w).Encode(tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(st.c.TTL / time.Second)})
}

// take spends one request of addr's bucket (an unparsable address, which
// net/http never gives, shares the zero Addr's).
func (h *TokenHandler) take(addr netip.Addr, perSecond float64, burst int) bool {
	key := addr
	if addr.IsValid() {
		key = addrKey(addr)
	}
	l, ok := h.buckets.Get(key)
	if !ok {
		fresh := rate.NewLimiter(rate.Limit(perSecond), burst)
		prev, found, _ := h.buckets.PeekOrAdd(key, fresh)
		l = fresh
		if found {
			l = prev
		}
	}
	// A reload changing rate or burst applies to known addresses too.
	now := h.now()
	if l.Limit() != rate.Limit(perSecond) {
		l.SetLimitAt(now, rate.Limit(perSecond))
	}
	if l.Burst() != burst {
		l.SetBurstAt(now, burst)
	}
	return l.AllowN(now, 1)
}

// retryAfterFailures is the Retry-After, in seconds, of a refusal for
// too many failures: the time one failure takes to be forgiven.
func (h *TokenHandler) retryAfterFailures() int {
	l := h.checks.Limits()
	return max(1, int(l.FailureWindow/time.Second)/l.UserFailures)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The write error, if any, is the client's connection going away.
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
