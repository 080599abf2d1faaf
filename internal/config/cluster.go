package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Cluster joins this broker to other nodes over embedded NATS routes
// (internal/cluster, docs/clustering.md). Without a cluster: section no
// NATS runs at all.
type Cluster struct {
	// Name is the cluster's name, the same on every node; default
	// "petrel".
	Name string `yaml:"name"`
	// Node is this node's unique id in the cluster (required).
	Node string `yaml:"node"`
	// Listen is the host:port other nodes' routes connect to (required).
	Listen string `yaml:"listen"`
	// Advertise is the host:port the other nodes are told to reach this
	// node's routes on, when it is not listen: a proxy, a NAT or a
	// container's published port in between; default: listen.
	Advertise string `yaml:"advertise"`
	// Peers are the other nodes' route URLs (nats://host:port, or
	// host:port); this node's own address may be listed too, so that
	// every node can have the same list.
	Peers []string `yaml:"peers"`
	// Replicas is how many nodes hold each replicated asset; default 3,
	// capped by the number of nodes (1 + peers, this node not counted
	// twice).
	Replicas int `yaml:"replicas"`
	// DataDir is where this node keeps its replicated state; default
	// <store.data_dir>/cluster (ClusterDataDir).
	DataDir string `yaml:"data_dir"`
	// TLS secures the routes with mutual TLS: this node's certificate and
	// key, and the CA that signs every node's certificate.
	TLS ClusterTLS `yaml:"tls"`
	// AllowPlainRoutes accepts a listen address that is not loopback
	// without tls (every tenant's messages cross the routes).
	AllowPlainRoutes bool `yaml:"allow_plain_routes"`
	// InboxBytes bounds the bytes of messages from other nodes waiting for
	// this node's broker, per inbox (plain and shared); 0: the cluster's
	// default (cluster.DefaultInboxBytes, 64 MiB).
	InboxBytes ByteSize `yaml:"inbox_bytes"`
	// TombstoneTTL is how long the marker of a cleared retained topic
	// stays in the replicated stream before the node that wrote it purges
	// it; 0: the cluster's default (cluster.DefaultTombstoneTTL, 1 h).
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
	// MessageRetention is how long the cluster's message log keeps a
	// QoS>=1 message: a persistent session offline for longer loses its
	// oldest messages; default 168h (DefaultMessageRetention), 0 too.
	MessageRetention time.Duration `yaml:"message_retention"`
	// MessageBytes bounds the message log on each node that holds a
	// replica (the oldest messages are discarded past it); default 10 GiB
	// (DefaultMessageBytes); 0: no bound in bytes (message_retention
	// alone bounds it).
	MessageBytes ByteSize `yaml:"message_bytes"`
	// WillAfter is how long no route to a node may be up before the other
	// nodes take it for dead and publish the wills of its clients; 0: the
	// cluster's default (cluster.DefaultWillAfter, 15 s).
	WillAfter time.Duration `yaml:"will_after"`
}

// DefaultMessageRetention is cluster.message_retention's default.
const DefaultMessageRetention = 168 * time.Hour

// DefaultMessageBytes is cluster.message_bytes's default.
const DefaultMessageBytes ByteSize = 10 << 30

// presetDefaults fills, when the file opens a cluster: section, the
// defaults a key written 0 must be able to override (message_bytes: 0 is
// no bound).
func (cl *Cluster) presetDefaults() {
	cl.MessageBytes = DefaultMessageBytes
}

// ClusterTLS is the routes' mutual TLS.
type ClusterTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// DefaultClusterName is cluster.name's default.
const DefaultClusterName = "petrel"

// DefaultClusterReplicas is cluster.replicas's default.
const DefaultClusterReplicas = 3

// maxClusterNodeLen bounds cluster.node: it names the node in every
// message between nodes.
const maxClusterNodeLen = 64

// applyDefaults fills what a cluster: section left out.
func (cl *Cluster) applyDefaults() {
	if cl.Name == "" {
		cl.Name = DefaultClusterName
	}
	if cl.Replicas == 0 {
		cl.Replicas = DefaultClusterReplicas
	}
	if cl.MessageRetention == 0 {
		cl.MessageRetention = DefaultMessageRetention
	}
}

// ClusterDataDir returns cluster.data_dir, or its default under
// store.data_dir; "" without a cluster: section.
func (c *Config) ClusterDataDir() string {
	switch {
	case c.Cluster == nil:
		return ""
	case c.Cluster.DataDir != "":
		return c.Cluster.DataDir
	}
	return filepath.Join(c.Store.DataDir, "cluster")
}

// ClusterSize returns the number of nodes the cluster: section names:
// this node and its distinct peers other than itself.
func (c *Config) ClusterSize() int {
	if c.Cluster == nil {
		return 0
	}
	seen := map[string]bool{}
	for _, p := range c.Cluster.Peers {
		if hp, err := peerHostPort(p); err == nil && hp != c.Cluster.Listen && hp != c.Cluster.Advertise {
			seen[hp] = true
		}
	}
	return 1 + len(seen)
}

// validateCluster checks the cluster: section's values.
func (c *Config) validateCluster(bad func(path, format string, args ...any)) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if !isNodeToken(cl.Name, 128) {
		bad("cluster.name", "%q: 1 to 128 letters, digits, '_' or '-'", cl.Name)
	}
	switch {
	case cl.Node == "":
		bad("cluster.node", "required: this node's unique id (for example its host name)")
	case !isNodeToken(cl.Node, maxClusterNodeLen):
		bad("cluster.node", "%q: 1 to %d letters, digits, '_' or '-'", cl.Node, maxClusterNodeLen)
	}
	listenOK := false
	if cl.Listen == "" {
		bad("cluster.listen", "required: the host:port other nodes' routes connect to")
	} else if err := checkHostPort(cl.Listen); err != nil {
		bad("cluster.listen", "%q: %v", cl.Listen, err)
	} else {
		listenOK = true
	}
	advertiseOK := false
	if cl.Advertise != "" {
		if err := checkHostPort(cl.Advertise); err != nil {
			bad("cluster.advertise", "%q: %v", cl.Advertise, err)
		} else {
			advertiseOK = true
		}
	}
	seen := map[string]int{}
	for i, p := range cl.Peers {
		hp, err := peerHostPort(p)
		if err != nil {
			bad(fmt.Sprintf("cluster.peers[%d]", i), "%q: %v", p, err)
			continue
		}
		if j, dup := seen[hp]; dup {
			bad(fmt.Sprintf("cluster.peers[%d]", i), "%q: the same node as cluster.peers[%d]", p, j)
		}
		seen[hp] = i
	}
	if cl.Replicas < 1 {
		bad("cluster.replicas", "%d: must be at least 1", cl.Replicas)
	}
	if cl.InboxBytes < 0 {
		bad("cluster.inbox_bytes", "must not be negative")
	}
	if cl.TombstoneTTL < 0 {
		bad("cluster.tombstone_ttl", "must not be negative")
	}
	if cl.MessageRetention < 0 {
		bad("cluster.message_retention", "must not be negative")
	}
	if cl.WillAfter < 0 {
		bad("cluster.will_after", "must not be negative")
	}
	t := cl.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("cluster.tls", "cert_file and key_file go together")
	}
	if t != (ClusterTLS{}) && (t.CertFile == "" || t.CAFile == "") {
		bad("cluster.tls", "cert_file, key_file and ca_file: the routes use mutual TLS")
	}
	if listenOK && t == (ClusterTLS{}) && !cl.AllowPlainRoutes && !IsLoopback(cl.Listen) {
		bad("cluster.listen", "%q is not a loopback address and cluster.tls is not set: every tenant's messages and takeovers cross the routes; configure cluster.tls, or set cluster.allow_plain_routes: true on a network you trust", cl.Listen)
	}
	if advertiseOK && t == (ClusterTLS{}) && !cl.AllowPlainRoutes && !IsLoopback(cl.Advertise) {
		bad("cluster.advertise", "%q is not a loopback address and cluster.tls is not set: every tenant's messages and takeovers cross the routes; configure cluster.tls, or set cluster.allow_plain_routes: true on a network you trust", cl.Advertise)
	}
	if c.Store.Type == "memory" {
		bad("cluster", "not with store.type memory (petrel serve --ephemeral): a node keeps its cluster state on disk (cluster.data_dir), and one that forgot it would rejoin under the same cluster.node as a stranger")
	}
}

// clusterWarnings returns what the cluster: section does that the user
// may not expect: a replicas set above the nodes configured (the default
// is capped silently), a message log without a bound in bytes.
func (c *Config) clusterWarnings() []string {
	if c.Cluster == nil {
		return nil
	}
	var out []string
	if n := c.ClusterSize(); c.Cluster.Replicas > n {
		out = append(out, fmt.Sprintf("cluster.replicas %d is capped at %d, the number of nodes configured (this node and cluster.peers)", c.Cluster.Replicas, n))
	}
	if c.Cluster.MessageBytes == 0 {
		out = append(out, "cluster.message_bytes 0: the message log has no bound in bytes; only cluster.message_retention bounds its disk use, which then grows with the rate of QoS 1 and 2 publishes")
	}
	return out
}

// isNodeToken reports whether s is 1 to max letters, digits, '_' or '-':
// a NATS subject token and server name.
func isNodeToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// checkHostPort checks a host:port with a port from 1 to 65535.
func checkHostPort(addr string) error {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not host:port")
	}
	if port, err := strconv.Atoi(ps); err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", ps)
	}
	return nil
}

// peerHostPort returns the host:port of a peer route URL
// (nats://host:port, nats-route://, tls://, or a bare host:port).
func peerHostPort(p string) (string, error) {
	if !strings.Contains(p, "://") {
		p = "nats://" + p
	}
	u, err := url.Parse(p)
	if err != nil {
		return "", errors.New("not a route URL such as nats://10.0.0.2:6250")
	}
	switch u.Scheme {
	case "nats", "nats-route", "tls":
	default:
		return "", fmt.Errorf("scheme %q: want nats://, nats-route:// or tls://", u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", errors.New("want only scheme://host:port")
	}
	if err := checkHostPort(u.Host); err != nil {
		return "", err
	}
	return u.Host, nil
}

// ClusterTLSConfig returns the routes' mutual TLS configuration, nil when
// cluster.tls is not set: this node's certificate, offered to and
// required from every peer, verified against ca_file, TLS 1.2 at least.
func (c *Config) ClusterTLSConfig() (*tls.Config, error) {
	if c.Cluster == nil || c.Cluster.TLS == (ClusterTLS{}) {
		return nil, nil
	}
	t := c.Cluster.TLS
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls: cert_file %s, key_file %s: %w", t.CertFile, t.KeyFile, err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster.tls.ca_file %s: no PEM certificates found", t.CAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// checkCluster loads the cluster's TLS files as petrel serve would.
func (c *Config) checkCluster() error {
	_, err := c.ClusterTLSConfig()
	return err
}
