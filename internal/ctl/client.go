// Package ctl is petrel ctl's client of the admin REST API
// (internal/admin, docs/api/openapi.yaml): requests, paging and the
// table or JSON output. cmd/petrel holds only its flags.
package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// DefaultURL is the admin API petrel serve listens on by default.
const DefaultURL = "http://127.0.0.1:9883"

// Config says where the API is and how to authenticate.
type Config struct {
	// URL of the admin listener; default DefaultURL.
	URL string
	// User and Password authenticate with HTTP basic; Token (a JWT) with
	// Bearer. Neither: no credentials (loopback without auth).
	User, Password string
	Token          string
	// CAFile verifies an HTTPS listener's certificate (default: the
	// system's roots).
	CAFile string
	// Timeout bounds each request; default 30s.
	Timeout time.Duration
}

// Client calls the admin API.
type Client struct {
	base *url.URL
	cfg  Config
	hc   *http.Client
}

// maxResponseBytes bounds a response body the client reads.
const maxResponseBytes = 64 << 20

// New returns a Client for c.
func New(c Config) (*Client, error) {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	u, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ctl: admin URL %q: want http://host:port or https://host:port", c.URL)
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ctl: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ctl: %s: no PEM certificates", c.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: u, cfg: c, hc: &http.Client{Timeout: c.Timeout, Transport: tr}}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// APIError is an answer of the API other than 2xx.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// ErrNotFound is wrapped by the APIError of a 404.
var ErrNotFound = errors.New("not found")

// Is makes a 404 match ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Segment escapes a client id or topic for one path segment: every byte
// but letters, digits, '-', '_' and '~' is percent-encoded, so that "/",
// "." and ".." never split or climb the path.
func Segment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_' || ch == '~' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// do sends method path?query with body (JSON, when not nil) and decodes
// the answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := c.base.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	case c.cfg.User != "" || c.cfg.Password != "":
		req.SetBasicAuth(c.cfg.User, c.cfg.Password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ctl: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("ctl: reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("ctl: the answer is not what the API documents: %w", err)
		}
	}
	return nil
}

// Tenant names a tenant in a request, or none (Set false): the API then
// takes every tenant for a list and tenant "" for one object (a
// tenant-scoped principal always gets its own).
type Tenant struct {
	Name string
	Set  bool
}

func (t Tenant) add(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if t.Set {
		q.Set("tenant", t.Name)
	}
	return q
}

// list follows a list's pages until limit items (0: all of them).
func list[T any](ctx context.Context, c *Client, path string, q url.Values, limit int) ([]T, error) {
	var out []T
	for {
		page := api.MaxLimit
		if limit > 0 {
			page = min(limit-len(out), api.MaxLimit)
		}
		q.Set("limit", strconv.Itoa(page))
		var p api.Page[T]
		if err := c.do(ctx, "GET", path, q, nil, &p); err != nil {
			return out, err
		}
		out = append(out, p.Items...)
		if p.NextCursor == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		q.Set("cursor", p.NextCursor)
	}
}

// Sessions lists sessions (clients: online only) of tenant whose client
// ids start with prefix, at most limit (0: all).
func (c *Client) Sessions(ctx context.Context, online bool, t Tenant, prefix string, limit int) ([]api.Session, error) {
	q := t.add(nil)
	if prefix != "" {
		q.Set("client_id", prefix)
	}
	path := "/api/v1/sessions"
	if online {
		path = "/api/v1/clients"
	}
	return list[api.Session](ctx, c, path, q, limit)
}

// Session returns one session with its subscriptions (a client: only when
// connected).
func (c *Client) Session(ctx context.Context, online bool, t Tenant, clientID string) (api.Session, error) {
	var s api.Session
	path := "/api/v1/sessions/"
	if online {
		path = "/api/v1/clients/"
	}
	err := c.do(ctx, "GET", path+Segment(clientID), t.add(nil), nil, &s)
	return s, err
}

// Kick disconnects a client (5.0: DISCONNECT 0x98).
func (c *Client) Kick(ctx context.Context, t Tenant, clientID string) error {
	return c.do(ctx, "DELETE", "/api/v1/clients/"+Segment(clientID), t.add(nil), nil, nil)
}

// DeleteSession discards a session, kicking its client first.
func (c *Client) DeleteSession(ctx context.Context, t Tenant, clientID string) error {
	return c.do(ctx, "DELETE", "/api/v1/sessions/"+Segment(clientID), t.add(nil), nil, nil)
}

// SubscriptionFilter selects subscriptions.
type SubscriptionFilter struct {
	Tenant   Tenant
	ClientID string // one session's
	Filter   string // exactly this filter
	Topic    string // filters matching this topic name
}

// Subscriptions lists subscriptions, at most limit (0: all).
func (c *Client) Subscriptions(ctx context.Context, f SubscriptionFilter, limit int) ([]api.Subscription, error) {
	q := f.Tenant.add(nil)
	for k, v := range map[string]string{"client_id": f.ClientID, "filter": f.Filter, "topic": f.Topic} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return list[api.Subscription](ctx, c, "/api/v1/subscriptions", q, limit)
}

// Retained lists the retained messages matching filter ("": all the
// principal may see), at most limit (0: all).
func (c *Client) Retained(ctx context.Context, filter string, limit int) ([]api.Retained, error) {
	q := url.Values{}
	if filter != "" {
		q.Set("filter", filter)
	}
	return list[api.Retained](ctx, c, "/api/v1/retained", q, limit)
}

// RetainedMessage returns the retained message of topic.
func (c *Client) RetainedMessage(ctx context.Context, topic string) (api.Retained, error) {
	var r api.Retained
	err := c.do(ctx, "GET", "/api/v1/retained/"+Segment(topic), nil, nil, &r)
	return r, err
}

// DeleteRetained removes the retained message of topic.
func (c *Client) DeleteRetained(ctx context.Context, topic string) error {
	return c.do(ctx, "DELETE", "/api/v1/retained/"+Segment(topic), nil, nil, nil)
}

// Publish publishes a message as the authenticated principal.
func (c *Client) Publish(ctx context.Context, req api.PublishRequest) (api.PublishResult, error) {
	var r api.PublishResult
	err := c.do(ctx, "POST", "/api/v1/publish", nil, req, &r)
	return r, err
}

// Stats returns the broker's counters.
func (c *Client) Stats(ctx context.Context) (api.Stats, error) {
	var s api.Stats
	err := c.do(ctx, "GET", "/api/v1/stats", nil, nil, &s)
	return s, err
}

// Cluster returns the cluster as the broker's node sees it (ErrNotFound:
// the broker is one node).
func (c *Client) Cluster(ctx context.Context) (api.Cluster, error) {
	var cl api.Cluster
	err := c.do(ctx, "GET", "/api/v1/cluster", nil, nil, &cl)
	return cl, err
}

// Reload makes the broker reload its configuration, as SIGHUP does.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, "POST", "/api/v1/reload", nil, nil, nil)
}
