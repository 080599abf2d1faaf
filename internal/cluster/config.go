package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config configures one cluster node (the broker's cluster: section).
type Config struct {
	// Name is the cluster's name; every node of one cluster has the same.
	Name string
	// Node is this node's unique id: letters, digits, '_' and '-' (it is
	// a NATS subject token and the JetStream server name).
	Node string
	// Listen is the route address this node accepts other nodes on
	// (host:port).
	Listen string
	// Advertise is the route address the other nodes are told to reach
	// this node on (host:port) when it is not Listen: a proxy or a NAT
	// between the nodes. "": Listen.
	Advertise string
	// Peers are the route addresses of the other nodes (host:port, or
	// nats-route://host:port, tls://host:port). A peer equal to Listen
	// or Advertise is ignored.
	Peers []string
	// Replicas is the replication factor of the cluster's JetStream
	// assets; it is capped by the number of configured nodes
	// (1+len(Peers)).
	Replicas int
	// DataDir is the JetStream store directory.
	DataDir string
	// TLS secures the routes, both ways, when not nil: it must hold this
	// node's certificate (Certificates), the CA that signs the other
	// nodes' (RootCAs, and ClientCAs: a peer that does not present a
	// certificate signed by it is refused). nil: plain routes.
	TLS *tls.Config
	// Logger receives the node's and the embedded server's messages; nil
	// discards them.
	Logger *slog.Logger
	// Connections, when set, returns this node's number of client
	// connections, reported by Status to every node.
	Connections func() int
	// InboxBytes bounds the bytes of messages from other nodes that each
	// of the node's two inboxes (plain subscriptions, share groups) holds
	// for the broker, beside the bound of 32,768 messages; past either the
	// messages are dropped and counted (Counters.InboxDropped) and the
	// connection stays up. A message larger than the bound alone is taken
	// when the inbox is empty. 0: DefaultInboxBytes.
	InboxBytes int
	// TombstoneTTL is how long a cleared retained topic's tombstone stays
	// in the retained stream before the node that cleared it purges it:
	// nodes that are up apply a clear at once, and a node that was away
	// for less than this applies it when it comes back. 0:
	// DefaultTombstoneTTL.
	TombstoneTTL time.Duration
	// MessageRetention is how long the message log (stream PETREL_MSGS)
	// keeps a message: a persistent session offline for longer loses its
	// oldest messages. 0: DefaultMessageRetention.
	MessageRetention time.Duration
	// MessageBytes bounds the message log's bytes on each replica; past
	// it the oldest messages are discarded. 0: DefaultMessageBytes;
	// negative: no bound in bytes (MessageRetention alone bounds it).
	MessageBytes int64
	// WillAfter is how long no route to a node may be up before the other
	// nodes take it for dead and publish the wills of its clients
	// (wills.go); a node the JetStream meta group reports offline and
	// that no route reaches is taken for dead at once. 0:
	// DefaultWillAfter.
	WillAfter time.Duration
}

// Defaults of Config's bounds.
const (
	// DefaultInboxBytes is Config.InboxBytes's default: 64 MiB per inbox.
	DefaultInboxBytes = 64 << 20
	// DefaultTombstoneTTL is Config.TombstoneTTL's default.
	DefaultTombstoneTTL = time.Hour
	// DefaultMessageRetention is Config.MessageRetention's default: 7 days.
	DefaultMessageRetention = 168 * time.Hour
	// DefaultMessageBytes is Config.MessageBytes's default: 10 GiB.
	DefaultMessageBytes = 10 << 30
	// DefaultWillAfter is Config.WillAfter's default.
	DefaultWillAfter = 15 * time.Second
)

// inboxBytes is InboxBytes or its default.
func (c Config) inboxBytes() int {
	if c.InboxBytes == 0 {
		return DefaultInboxBytes
	}
	return c.InboxBytes
}

// tombstoneTTL is TombstoneTTL or its default.
func (c Config) tombstoneTTL() time.Duration {
	if c.TombstoneTTL == 0 {
		return DefaultTombstoneTTL
	}
	return c.TombstoneTTL
}

// messageRetention is MessageRetention or its default.
func (c Config) messageRetention() time.Duration {
	if c.MessageRetention == 0 {
		return DefaultMessageRetention
	}
	return c.MessageRetention
}

// messageBytes is the log's JetStream MaxBytes: MessageBytes, its
// default, or -1 for no bound.
func (c Config) messageBytes() int64 {
	switch {
	case c.MessageBytes == 0:
		return DefaultMessageBytes
	case c.MessageBytes < 0:
		return -1
	}
	return c.MessageBytes
}

// willAfter is WillAfter or its default.
func (c Config) willAfter() time.Duration {
	if c.WillAfter == 0 {
		return DefaultWillAfter
	}
	return c.WillAfter
}

// maxNodeLen bounds a node id: it travels in every message envelope.
const maxNodeLen = 64

// Validate reports the first problem of c, naming the setting.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster: name is required")
	}
	if !isToken(c.Name, 128) {
		return fmt.Errorf("cluster: name %q: only letters, digits, '_' and '-' (at most 128)", c.Name)
	}
	if c.Node == "" {
		return errors.New("cluster: node (this node's unique id) is required")
	}
	if !isToken(c.Node, maxNodeLen) {
		return fmt.Errorf("cluster: node %q: only letters, digits, '_' and '-' (at most %d)", c.Node, maxNodeLen)
	}
	if _, _, err := hostPort(c.Listen); err != nil {
		return fmt.Errorf("cluster: listen %q: %w", c.Listen, err)
	}
	if c.Advertise != "" {
		if _, _, err := hostPort(c.Advertise); err != nil {
			return fmt.Errorf("cluster: advertise %q: %w", c.Advertise, err)
		}
	}
	for i, p := range c.Peers {
		if _, err := peerURL(p); err != nil {
			return fmt.Errorf("cluster: peers[%d] %q: %w", i, p, err)
		}
	}
	if c.Replicas < 1 {
		return fmt.Errorf("cluster: replicas %d: must be at least 1", c.Replicas)
	}
	if c.DataDir == "" {
		return errors.New("cluster: data_dir is required")
	}
	if c.InboxBytes < 0 {
		return fmt.Errorf("cluster: inbox_bytes %d: must not be negative", c.InboxBytes)
	}
	if c.TombstoneTTL < 0 {
		return fmt.Errorf("cluster: tombstone_ttl %s: must not be negative", c.TombstoneTTL)
	}
	if c.MessageRetention < 0 {
		return fmt.Errorf("cluster: message_retention %s: must not be negative", c.MessageRetention)
	}
	if c.WillAfter < 0 {
		return fmt.Errorf("cluster: will_after %s: must not be negative", c.WillAfter)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		return errors.New("cluster: tls: no certificate for this node")
	}
	return nil
}

// isToken reports whether s is 1 to max letters, digits, '_' or '-'.
func isToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			return false
		}
	}
	return true
}

// hostPort splits a host:port with a port from 1 to 65535.
func hostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 1 to 65535", ps)
	}
	return host, port, nil
}

// peerURL turns a peer address into a route URL.
func peerURL(p string) (*url.URL, error) {
	if !strings.Contains(p, "://") {
		p = "nats-route://" + p
	}
	u, err := url.Parse(p)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "nats-route", "nats", "tls":
	default:
		return nil, fmt.Errorf("scheme %q: want nats-route, nats or tls", u.Scheme)
	}
	if _, _, err := hostPort(u.Host); err != nil {
		return nil, err
	}
	return u, nil
}

// routes returns the peers' route URLs, without this node's own address.
func (c Config) routes() []*url.URL {
	var out []*url.URL
	for _, p := range c.Peers {
		u, err := peerURL(p)
		if err != nil || u.Host == c.Listen || u.Host == c.Advertise {
			continue
		}
		out = append(out, u)
	}
	return out
}

// replicas is the replication factor of the assets: Replicas capped by
// the number of configured nodes.
func (c Config) replicas() int {
	return max(1, min(c.Replicas, 1+len(c.routes())))
}
