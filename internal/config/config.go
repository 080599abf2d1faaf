// Package config reads Petrel's YAML configuration: one file, every key
// documented in docs/configuration.md with its default, unknown keys
// rejected with their path, values validated with messages naming the key,
// and PETREL_... environment variables overriding the file.
package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/clientaddr"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// Config is the whole configuration file.
type Config struct {
	Log       Log        `yaml:"log"`
	Listeners []Listener `yaml:"listeners"`
	Limits    Limits     `yaml:"limits"`
	// Redirect sends every 5.0 client to another server (CONNACK 0x9C, or
	// 0x9D when permanent).
	Redirect Redirect `yaml:"redirect"`
	// Store is where persistent sessions and retained messages are kept.
	Store Store `yaml:"store"`
	// AllowAnonymousRemote accepts anonymous clients on non-loopback
	// listeners (until authentication is configured, every client is
	// anonymous).
	AllowAnonymousRemote bool `yaml:"allow_anonymous_remote"`
	// Auth, when present, turns authentication and authorization on
	// (auth.go, docs/security.md).
	Auth *Auth `yaml:"auth"`
	// Runtime tunes the Go runtime under petrel serve.
	Runtime Runtime `yaml:"runtime"`
	// Admin is the admin HTTP listener (admin.go).
	Admin Admin `yaml:"admin"`
	// Cluster, when present, joins this broker to other nodes (cluster.go,
	// docs/clustering.md); nil runs one node with no NATS at all.
	Cluster *Cluster `yaml:"cluster"`

	// Metrics configures the Prometheus metrics (/metrics).
	Metrics Metrics `yaml:"metrics"`
	// SysInterval is how often the $SYS topics are published (retained);
	// 0 turns them off.
	SysInterval time.Duration `yaml:"sys_interval"`

	// Warnings are what Load and Parse accepted but want the user to see:
	// a setting of an earlier version that is ignored now (removed.go).
	// petrel serve logs them, petrel check prints them.
	Warnings []string `yaml:"-"`
}

// Metrics configures the Prometheus metrics.
type Metrics struct {
	// TenantLabels is how many tenants get series of their own for the
	// per-tenant figures (the top N by each figure; the rest are summed
	// as tenant="other"); 0 exports none.
	TenantLabels int `yaml:"tenant_labels"`
}

// DefaultSysInterval is sys_interval's default.
const DefaultSysInterval = 10 * time.Second

// MaxTenantLabels bounds metrics.tenant_labels (internal/metrics
// refuses more).
const MaxTenantLabels = 1000

// Runtime tunes the Go runtime.
type Runtime struct {
	// GCHeapFloor keeps the garbage collector's heap goal at or above
	// this size (internal/heapfloor): while the live heap is small, the
	// collector runs once the heap reaches it instead of each time the
	// heap doubles. 0 turns it off. Ignored when the GOGC environment
	// variable is set.
	GCHeapFloor ByteSize `yaml:"gc_heap_floor"`
	// FDTableSize is how many descriptors the kernel's descriptor table
	// is sized for at start (internal/fdtable; at most the open-file
	// limit): connections up to it never wait for the table to grow. 0
	// leaves the table to grow as descriptors come.
	FDTableSize int `yaml:"fd_table_size"`
}

// DefaultGCHeapFloor is runtime.gc_heap_floor's default.
const DefaultGCHeapFloor = 32 << 20

// DefaultFDTableSize is runtime.fd_table_size's default: 512 KiB of
// kernel memory, and the first 65,536 connections never wait for the
// table to grow (each growth past it waits once, as without it).
const DefaultFDTableSize = 1 << 16

func defaultRuntime() Runtime {
	return Runtime{GCHeapFloor: DefaultGCHeapFloor, FDTableSize: DefaultFDTableSize}
}

// Store configures the embedded store.
type Store struct {
	// Type is "disk" (default: under DataDir) or "memory" (nothing
	// survives a restart; also petrel serve --ephemeral).
	Type         string        `yaml:"type"`
	DataDir      string        `yaml:"data_dir"`
	Sync         string        `yaml:"sync"` // always, interval, none
	SyncInterval time.Duration `yaml:"sync_interval"`
	SkipCorrupt  bool          `yaml:"skip_corrupt"`
	// MinFreeSpace is the free space below which the disk store refuses
	// writes until there is room again (0: no reserve).
	MinFreeSpace ByteSize `yaml:"min_free_space"`
}

// DefaultMinFreeSpace is store.min_free_space's default.
const DefaultMinFreeSpace = 64 << 20

func defaultStore() Store {
	return Store{Type: "disk", DataDir: "data", Sync: "always", SyncInterval: 100 * time.Millisecond,
		MinFreeSpace: DefaultMinFreeSpace}
}

// Redirect configures 5.0 server redirection.
type Redirect struct {
	Server    string `yaml:"server"`
	Permanent bool   `yaml:"permanent"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
	// AuditFile, when set, receives every audit event (authentications,
	// refusals, takeovers, reloads) as a JSON line; reopened on SIGHUP.
	AuditFile string `yaml:"audit_file"`
}

// Listener is one network listener.
type Listener struct {
	Name           string    `yaml:"name"`
	Type           string    `yaml:"type"` // tcp, tls, ws, wss
	Address        string    `yaml:"address"`
	MaxConnections int       `yaml:"max_connections"`
	ConnectionRate float64   `yaml:"connection_rate"` // new connections per second, 0: no limit
	ProxyProtocol  bool      `yaml:"proxy_protocol"`
	TLS            TLS       `yaml:"tls"`
	WebSocket      WebSocket `yaml:"websocket"`
}

// TLS configures a tls or wss listener.
type TLS struct {
	CertFile         string        `yaml:"cert_file"`
	KeyFile          string        `yaml:"key_file"`
	MinVersion       string        `yaml:"min_version"` // "1.2" or "1.3"
	ClientAuth       string        `yaml:"client_auth"` // none, optional, require
	ClientCAFile     string        `yaml:"client_ca_file"`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// HelloTimeout: from accept to a complete ClientHello (PROXY header
	// included); at most HandshakeTimeout.
	HelloTimeout  time.Duration `yaml:"hello_timeout"`
	MaxHandshakes int           `yaml:"max_handshakes"`
	// MaxHandshakesPerAddress: unfinished handshakes of one IPv4 address or
	// IPv6 /64; at most MaxHandshakes.
	MaxHandshakesPerAddress int    `yaml:"max_handshakes_per_address"`
	CertUsername            string `yaml:"cert_username"` // none, cn, subject
}

// WebSocket configures a ws or wss listener.
type WebSocket struct {
	Path           string   `yaml:"path"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Bounds of pending upgrades (listener.Config).
	UpgradeRequestTimeout time.Duration `yaml:"upgrade_request_timeout"`
	UpgradeTimeout        time.Duration `yaml:"upgrade_timeout"`
	MaxUpgrades           int           `yaml:"max_upgrades"`
	MaxUpgradesPerAddress int           `yaml:"max_upgrades_per_address"`
	// TrustedProxies: addresses or CIDR networks of the reverse proxies
	// whose X-Forwarded-For names the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustForwardedFor is the earlier form: without TrustedProxies it
	// trusts loopback peers only (clientaddr.Loopback), with a warning.
	TrustForwardedFor bool `yaml:"trust_forwarded_for"`
}

// Limits bound what clients may do.
type Limits struct {
	MaxConnections   int           `yaml:"max_connections"`
	MaxPacketSize    ByteSize      `yaml:"max_packet_size"`
	MaxConnectSize   ByteSize      `yaml:"max_connect_size"`
	MaxTopicLength   int           `yaml:"max_topic_length"`
	MaxTopicLevels   int           `yaml:"max_topic_levels"`
	MaxSubscriptions int           `yaml:"max_subscriptions_per_client"`
	MaxInflight      int           `yaml:"max_inflight"`
	QueueMessages    int           `yaml:"queue_messages"`
	QueueBytes       ByteSize      `yaml:"queue_bytes"`
	MemoryBudget     ByteSize      `yaml:"memory_budget"` // 0: a quarter of the memory (broker.Options.MemoryBudget)
	QueuePolicy      string        `yaml:"queue_policy"`
	QueueQoS0Offline bool          `yaml:"queue_qos0_offline"`
	ConnectTimeout   time.Duration `yaml:"connect_timeout"`
	MinKeepAlive     time.Duration `yaml:"min_keepalive"`
	MaxKeepAlive     time.Duration `yaml:"max_keepalive"`
	// 5.0
	TenantQueueMessages        int           `yaml:"tenant_queue_messages"`
	TenantQueueBytes           ByteSize      `yaml:"tenant_queue_bytes"`
	AssignedIDMaxSessionExpiry time.Duration `yaml:"assigned_id_max_session_expiry"`
	ReceiveMaximum             int           `yaml:"receive_maximum"`
	TopicAliasMaximum          int           `yaml:"topic_alias_maximum"`
	TopicAliasOutMaximum       int           `yaml:"topic_alias_out_maximum"` // 0: none
	TopicAliasOutBytes         ByteSize      `yaml:"topic_alias_out_bytes"`
	MaxSessionExpiry           time.Duration `yaml:"max_session_expiry"`
}

// Default returns the configuration used when no file is given: one TCP
// listener on 127.0.0.1:1883 and the documented default limits.
func Default() *Config {
	return &Config{
		Log:   Log{Level: "info", Format: "text"},
		Store: defaultStore(),
		Listeners: []Listener{
			{Name: "tcp", Type: "tcp", Address: "127.0.0.1:1883"},
		},
		Limits:      defaultLimits(),
		Runtime:     defaultRuntime(),
		Admin:       defaultAdmin(),
		SysInterval: DefaultSysInterval,
	}
}

func defaultLimits() Limits {
	return Limits{
		MaxPacketSize:  16 << 20,
		MaxConnectSize: broker.DefaultMaxConnectSize,
		MaxTopicLength: 65535,
		MaxInflight:    1024,
		QueueMessages:  50_000,
		QueueBytes:     broker.DefaultQueueBytes,
		QueuePolicy:    "drop-new",
		ConnectTimeout: 10 * time.Second,
		ReceiveMaximum: 65535,
		// 100 inbound aliases per 5.0 connection
		TopicAliasMaximum: 100,
		// 100 outbound aliases, 16 KiB of topic names
		TopicAliasOutMaximum: broker.DefaultTopicAliasOutMaximum,
		TopicAliasOutBytes:   broker.DefaultTopicAliasOutBytes,
	}
}

// applyDefaults fills what a file left out.
func (c *Config) applyDefaults() {
	if c.Store.Type == "" {
		c.Store.Type = "disk"
	}
	if c.Store.DataDir == "" {
		c.Store.DataDir = "data"
	}
	if c.Store.Sync == "" {
		c.Store.Sync = "always"
	}
	if c.Store.SyncInterval == 0 {
		c.Store.SyncInterval = 100 * time.Millisecond
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if len(c.Listeners) == 0 {
		c.Listeners = Default().Listeners
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = fmt.Sprintf("%s-%d", l.Type, i)
		}
		if l.Type == "tls" || l.Type == "wss" {
			if l.TLS.MinVersion == "" {
				l.TLS.MinVersion = "1.2"
			}
			if l.TLS.ClientAuth == "" {
				l.TLS.ClientAuth = "none"
			}
			if l.TLS.HandshakeTimeout == 0 {
				l.TLS.HandshakeTimeout = listener.DefaultHandshakeTimeout
			}
			if l.TLS.MaxHandshakes == 0 {
				l.TLS.MaxHandshakes = listener.DefaultMaxHandshakes
			}
			if l.TLS.HelloTimeout == 0 {
				l.TLS.HelloTimeout = listener.DefaultHelloTimeout
			}
			if l.TLS.MaxHandshakesPerAddress == 0 {
				l.TLS.MaxHandshakesPerAddress = listener.DefaultMaxHandshakesPerAddress
			}
		}
		if (l.Type == "ws" || l.Type == "wss") && l.WebSocket.Path == "" {
			l.WebSocket.Path = "/mqtt"
		}
	}
	d := defaultLimits()
	lim := &c.Limits
	if lim.MaxPacketSize == 0 {
		lim.MaxPacketSize = d.MaxPacketSize
	}
	if lim.MaxConnectSize == 0 {
		lim.MaxConnectSize = d.MaxConnectSize
	}
	if lim.MaxTopicLength == 0 {
		lim.MaxTopicLength = d.MaxTopicLength
	}
	if lim.MaxInflight == 0 {
		lim.MaxInflight = d.MaxInflight
	}
	if lim.QueueMessages == 0 {
		lim.QueueMessages = d.QueueMessages
	}
	if lim.QueueBytes == 0 {
		lim.QueueBytes = d.QueueBytes
	}
	if lim.QueuePolicy == "" {
		lim.QueuePolicy = d.QueuePolicy
	}
	if lim.ConnectTimeout == 0 {
		lim.ConnectTimeout = d.ConnectTimeout
	}
	if lim.ReceiveMaximum == 0 {
		lim.ReceiveMaximum = d.ReceiveMaximum
	}
	if lim.TopicAliasOutBytes == 0 {
		lim.TopicAliasOutBytes = d.TopicAliasOutBytes
	}
	if c.Auth != nil {
		c.Auth.applyDefaults()
	}
	if c.Cluster != nil {
		c.Cluster.applyDefaults()
	}
}

// Validate checks every value and returns all problems at once, each
// naming its key path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	oneOf := func(path, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		oneOf(p+".type", l.Type, "tcp", "tls", "ws", "wss")
		if names[l.Name] {
			bad(p+".name", "%q used by another listener", l.Name)
		}
		names[l.Name] = true
		if _, port, err := net.SplitHostPort(l.Address); err != nil {
			bad(p+".address", "%q is not host:port", l.Address)
		} else if addrs[l.Address] && port != "0" {
			bad(p+".address", "%q used by another listener", l.Address)
		}
		addrs[l.Address] = true
		if l.MaxConnections < 0 {
			bad(p+".max_connections", "must not be negative")
		}
		if l.ConnectionRate < 0 {
			bad(p+".connection_rate", "must not be negative")
		}
		secure := l.Type == "tls" || l.Type == "wss"
		if secure {
			if l.TLS.CertFile == "" {
				bad(p+".tls.cert_file", "required for a %s listener", l.Type)
			}
			if l.TLS.KeyFile == "" {
				bad(p+".tls.key_file", "required for a %s listener", l.Type)
			}
			oneOf(p+".tls.min_version", l.TLS.MinVersion, "1.2", "1.3")
			oneOf(p+".tls.client_auth", l.TLS.ClientAuth, "none", "optional", "require")
			if l.TLS.ClientAuth != "none" && l.TLS.ClientCAFile == "" {
				bad(p+".tls.client_ca_file", "required when client_auth is %q", l.TLS.ClientAuth)
			}
			if l.TLS.HandshakeTimeout < 0 {
				bad(p+".tls.handshake_timeout", "must not be negative")
			}
			if l.TLS.CertUsername != "" {
				oneOf(p+".tls.cert_username", l.TLS.CertUsername, "none", "cn", "subject")
			}
			if l.TLS.MaxHandshakes < 0 {
				bad(p+".tls.max_handshakes", "must not be negative")
			}
			if l.TLS.HelloTimeout < 0 {
				bad(p+".tls.hello_timeout", "must not be negative")
			}
			if l.TLS.MaxHandshakesPerAddress < 0 {
				bad(p+".tls.max_handshakes_per_address", "must not be negative")
			}
		} else if l.TLS != (TLS{}) {
			bad(p+".tls", "only for tls and wss listeners")
		}
		web := l.Type == "ws" || l.Type == "wss"
		if web {
			if !strings.HasPrefix(l.WebSocket.Path, "/") {
				bad(p+".websocket.path", "%q must start with /", l.WebSocket.Path)
			}
			if _, err := clientaddr.ParseTrustedProxies(l.WebSocket.TrustedProxies); err != nil {
				bad(p+".websocket.trusted_proxies", "%v", err)
			}
			for _, f := range []struct {
				key string
				neg bool
			}{
				{"upgrade_request_timeout", l.WebSocket.UpgradeRequestTimeout < 0}, {"upgrade_timeout", l.WebSocket.UpgradeTimeout < 0},
				{"max_upgrades", l.WebSocket.MaxUpgrades < 0}, {"max_upgrades_per_address", l.WebSocket.MaxUpgradesPerAddress < 0},
			} {
				if f.neg {
					bad(p+".websocket."+f.key, "must not be negative")
				}
			}
		} else if l.WebSocket.Path != "" || len(l.WebSocket.AllowedOrigins) > 0 || l.WebSocket.TrustForwardedFor ||
			len(l.WebSocket.TrustedProxies) > 0 || l.WebSocket.UpgradeRequestTimeout != 0 || l.WebSocket.UpgradeTimeout != 0 ||
			l.WebSocket.MaxUpgrades != 0 || l.WebSocket.MaxUpgradesPerAddress != 0 {
			bad(p+".websocket", "only for ws and wss listeners")
		}
	}
	lim := c.Limits
	nonNeg := func(path string, v int64) {
		if v < 0 {
			bad(path, "must not be negative")
		}
	}
	if n := c.Metrics.TenantLabels; n < 0 || n > MaxTenantLabels {
		bad("metrics.tenant_labels", "%d out of range 0..%d", n, MaxTenantLabels)
	}
	if c.SysInterval != 0 && c.SysInterval < time.Second {
		bad("sys_interval", "%v: 0 (off) or at least 1s", c.SysInterval)
	}
	nonNeg("runtime.gc_heap_floor", int64(c.Runtime.GCHeapFloor))
	nonNeg("runtime.fd_table_size", int64(c.Runtime.FDTableSize))
	nonNeg("limits.max_connections", int64(lim.MaxConnections))
	nonNeg("limits.max_topic_levels", int64(lim.MaxTopicLevels))
	nonNeg("limits.max_subscriptions_per_client", int64(lim.MaxSubscriptions))
	nonNeg("limits.queue_messages", int64(lim.QueueMessages))
	nonNeg("limits.queue_bytes", int64(lim.QueueBytes))
	nonNeg("limits.memory_budget", int64(lim.MemoryBudget))
	nonNeg("limits.min_keepalive", int64(lim.MinKeepAlive))
	nonNeg("limits.max_keepalive", int64(lim.MaxKeepAlive))
	if lim.MaxPacketSize < 16 || lim.MaxPacketSize > 268_435_460 {
		bad("limits.max_packet_size", "%d out of range 16..268435460", lim.MaxPacketSize)
	}
	if lim.MaxConnectSize < 16 || lim.MaxConnectSize > 268_435_460 {
		bad("limits.max_connect_size", "%d out of range 16..268435460", lim.MaxConnectSize)
	}
	if lim.MaxTopicLength < 1 || lim.MaxTopicLength > 65535 {
		bad("limits.max_topic_length", "%d out of range 1..65535", lim.MaxTopicLength)
	}
	if lim.MaxInflight < 1 || lim.MaxInflight > 65535 {
		bad("limits.max_inflight", "%d out of range 1..65535", lim.MaxInflight)
	}
	oneOf("limits.queue_policy", lim.QueuePolicy, "drop-new", "drop-oldest")
	if lim.ConnectTimeout <= 0 {
		bad("limits.connect_timeout", "must be positive")
	}
	if lim.MaxKeepAlive > 0 && lim.MinKeepAlive > lim.MaxKeepAlive {
		bad("limits.min_keepalive", "%v is above limits.max_keepalive %v", lim.MinKeepAlive, lim.MaxKeepAlive)
	}
	if lim.MaxKeepAlive > 65535*time.Second {
		bad("limits.max_keepalive", "%v is above the protocol's 65535s", lim.MaxKeepAlive)
	}
	if lim.ReceiveMaximum < 1 || lim.ReceiveMaximum > 65535 {
		bad("limits.receive_maximum", "%d out of range 1..65535", lim.ReceiveMaximum)
	}
	if lim.TopicAliasMaximum < 0 || lim.TopicAliasMaximum > 65535 {
		bad("limits.topic_alias_maximum", "%d out of range 0..65535 (0: no inbound aliases)", lim.TopicAliasMaximum)
	}
	if lim.TopicAliasOutMaximum < 0 || lim.TopicAliasOutMaximum > 65535 {
		bad("limits.topic_alias_out_maximum", "%d out of range 0..65535 (0: no outbound aliases)", lim.TopicAliasOutMaximum)
	}
	nonNeg("limits.topic_alias_out_bytes", int64(lim.TopicAliasOutBytes))
	nonNeg("limits.max_session_expiry", int64(lim.MaxSessionExpiry))
	nonNeg("limits.tenant_queue_messages", int64(lim.TenantQueueMessages))
	nonNeg("limits.tenant_queue_bytes", int64(lim.TenantQueueBytes))
	nonNeg("limits.assigned_id_max_session_expiry", int64(lim.AssignedIDMaxSessionExpiry))
	oneOf("store.type", c.Store.Type, "disk", "memory")
	oneOf("store.sync", c.Store.Sync, "always", "interval", "none")
	if c.Store.SyncInterval < 0 {
		bad("store.sync_interval", "must not be negative")
	}
	nonNeg("store.min_free_space", int64(c.Store.MinFreeSpace))
	if c.Redirect.Permanent && c.Redirect.Server == "" {
		bad("redirect.server", "required when redirect.permanent is true")
	}
	if c.Auth != nil {
		c.Auth.validate(bad)
	}
	c.validateAdmin(bad)
	c.validateCluster(bad)
	return errors.Join(errs...)
}
