// Package broker is Petrel's embeddable MQTT broker: Options, New, Serve and
// Shutdown, and the small interfaces it needs (Authenticator, Authorizer).
// It never imports a concrete implementation of those.
package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/internal/retain"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/internal/transport"
	"github.com/petrel-mqtt/petrel/packet"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("broker: server closed")

// Overflow policies for Options.QueuePolicy.
const (
	PolicyDropNew    = "drop-new"
	PolicyDropOldest = "drop-oldest"
)

// UnauthorizedPublish behaviours for Options.UnauthorizedPublish.
const (
	UnauthorizedClose      = "close"
	UnauthorizedAckAndDrop = "ack-and-drop"
)

// DefaultMaxConnectSize is Options.MaxConnectSize's default: a CONNECT
// with a JWT password (a few KiB, 16 KiB at the most seen in practice), a
// client id, a user name and a will of a few tens of KiB fits, while a
// connection not yet authenticated can make the broker hold no more than
// that.
const DefaultMaxConnectSize = 64 << 10

// The defaults of Options.TopicAliasOutMaximum and TopicAliasOutBytes:
// the table of the topics a connection is sent under an alias holds at
// most 100 topics and 16 KiB of their names (100 topics of 160 bytes).
const (
	DefaultTopicAliasOutMaximum = 100
	DefaultTopicAliasOutBytes   = 16 << 10
)

// Options configure a Broker. The zero value is valid: every field has the
// default documented on it.
type Options struct {
	// Logger receives the broker's logs; default slog.Default().
	Logger *slog.Logger
	// Authenticator and Authorizer; default AllowAll.
	Authenticator Authenticator
	Authorizer    Authorizer
	// UnauthorizedPublish: "close" (default) or "ack-and-drop".
	UnauthorizedPublish string

	// MaxPacketSize bounds an inbound packet, fixed header included; default
	// 16 MiB, at most packet.MaxRemainingLength+5.
	MaxPacketSize int
	// MaxConnectSize bounds a packet read before the connection is
	// accepted: the CONNECT, and AUTH packets of a 5.0 enhanced
	// authentication; default 64 KiB (a JWT password of several KiB and a
	// will with a few tens of KiB fit), never above MaxPacketSize. A
	// larger one closes the connection before anything is allocated for it.
	MaxConnectSize int
	// ConnectTimeout is how long a new connection has, counted from
	// accept, to send its CONNECT and finish authenticating; default 10s.
	ConnectTimeout time.Duration
	// MinKeepAlive and MaxKeepAlive bound the keepalive a client may ask
	// for (0: no bound). Keepalive 0 (none) counts as above any maximum. A
	// 3.x client outside the bounds is refused (CONNACK 3, server
	// unavailable); a 5.0 client above the maximum is told the maximum in
	// CONNACK's Server Keep Alive, below the minimum it is refused.
	MinKeepAlive time.Duration
	MaxKeepAlive time.Duration

	// MaxConnections bounds concurrent client connections (0: no bound);
	// CONNECTs beyond it are refused with server unavailable (3.x) or
	// server busy (5.0).
	MaxConnections int
	// MaxTopicLength bounds topic names and filters in bytes (default
	// 65535); MaxTopicLevels bounds their levels (0: no bound).
	MaxTopicLength int
	MaxTopicLevels int
	// MaxSubscriptionsPerClient bounds a session's subscriptions (0: no
	// bound); a SUBSCRIBE beyond it is refused for that filter (0x80, 5.0:
	// quota exceeded).
	MaxSubscriptionsPerClient int

	// QueueMessages and QueueBytes bound each client's outbound queue;
	// defaults 50,000 messages and DefaultQueueBytes (64 MiB; -1: no byte
	// bound). The bytes (topic, payload) count the messages queued and
	// those in flight, sent and not yet acknowledged.
	QueueMessages int
	QueueBytes    int
	// MemoryBudget bounds the bytes held for all clients together: their
	// queued and in-flight messages (counted as for QueueBytes) and what
	// the connections' writers hold encoded. Past it new messages are
	// dropped by QueuePolicy, counted (Stats.BudgetDrops) and logged
	// (WARN, one line per 10 s at most, with the count). 0: a quarter of
	// the memory the process may use, its cgroup's limit or else the
	// machine's (internal/memsize); -1: no bound.
	MemoryBudget int64
	// TenantQueueMessages and TenantQueueBytes bound the messages queued
	// for all the sessions of one tenant together (Identity.Tenant); 0: no
	// bound. A full tenant applies QueuePolicy like a full queue.
	TenantQueueMessages int
	TenantQueueBytes    int
	// AssignedIDMaxSessionExpiry caps the session expiry of 5.0 clients
	// whose client id the broker assigned: without a stable id they can
	// never resume it (0: no cap beyond MaxSessionExpiry).
	AssignedIDMaxSessionExpiry time.Duration
	// QueuePolicy is "drop-new" (default) or "drop-oldest".
	QueuePolicy string
	// QueueQoS0Offline queues QoS 0 messages for offline persistent sessions.
	QueueQoS0Offline bool
	// MaxInflight is the outbound window of unacknowledged QoS 1/2
	// messages per client; default 1024.
	MaxInflight int

	// ReceiveMaximum is how many inbound QoS 2 messages a 5.0 client may
	// have awaiting PUBREL at once (the broker acknowledges QoS 1 at
	// once); default 65535. Exceeding it is DISCONNECT 0x93.
	ReceiveMaximum int
	// TopicAliasMaximum is the highest inbound topic alias a 5.0 client
	// may use; default 100, -1 disables inbound aliases.
	TopicAliasMaximum int
	// TopicAliasOutMaximum and TopicAliasOutBytes bound the topic aliases
	// the broker gives the topics it sends a 5.0 client (who says how many
	// it accepts, up to 65535): at most this many topics, of at most this
	// many bytes together, per connection; defaults 100 and 16 KiB (-1
	// for the first: none). Past them a topic is sent in full, without
	// an alias.
	TopicAliasOutMaximum int
	TopicAliasOutBytes   int
	// MaxSessionExpiry caps a 5.0 client's session expiry interval (0: no
	// cap). 3.x persistent sessions do not expire.
	MaxSessionExpiry time.Duration
	// Redirect, when set, refuses every CONNECT pointing the client at
	// this server (5.0 Server Reference, 0x9C use another server, or 0x9D
	// server moved when RedirectPermanent); 3.x clients get CONNACK 3.
	Redirect          string
	RedirectPermanent bool

	// Store keeps persistent sessions, their QoS 1/2 messages and the
	// retained messages across restarts; New loads it. Nil keeps
	// everything in memory only.
	Store Store

	// DropLogInterval is how long the messages dropped by queue bounds are
	// gathered before they are reported in the log, one WARN line per
	// client for that time (the first drop starts it); default 10s.
	DropLogInterval time.Duration

	// SweepInterval is how often expired 5.0 messages are removed from
	// offline sessions' queues and from the retained messages (and the
	// store); default 30s.
	SweepInterval time.Duration

	// RawTransport serves plain TCP connections through internal/transport
	// (Linux): a *net.TCPListener's (or a listener.Listener's) connections
	// are accepted with raw accept4 calls, read and written with raw
	// system calls on their descriptor, and an idle one waits parked in an
	// epoll set without a goroutine. False (the default for a program
	// embedding the broker) serves every connection through net.Listener
	// and net.Conn, each with its reader goroutine. `petrel serve` sets it.
	// Fixed at New: SetLimits keeps it.
	RawTransport bool

	// HeldRefusals bounds the connections whose refusal an Authenticator
	// asked to hold (HeldRefusal) held at once; default
	// DefaultHeldRefusals, negative: refusals are never held. Beyond it a
	// held refusal is answered at once. Fixed at New.
	HeldRefusals int
	// HeldRefusalsPerAddress bounds them per client address (an IPv6
	// /64); default DefaultHeldRefusalsPerAddress. While an address has
	// that many held, its new connections are closed at accept. Fixed at
	// New.
	HeldRefusalsPerAddress int

	// Fabric links the broker to the other nodes of a cluster (fabric.go,
	// internal/cluster); nil for one node. New binds it (Fabric.Bind)
	// before restoring the store. With a fabric, messages published here
	// go to the other nodes after the local delivery, share groups are
	// delivered through it (balanced across the nodes), retained changes
	// are replicated, and every CONNECT claims its session
	// (docs/design/message-path.md, "In a cluster"). Fixed at New.
	Fabric Fabric

	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Broker is an MQTT broker. Create one with New, give it listeners with
// Serve, stop it with Shutdown.
type Broker struct {
	cur     atomic.Pointer[Options] // replaced whole by SetLimits
	log     *slog.Logger
	store   Store       // nil: memory only
	riding  RidingStore // store, when it can ride the next sync (commitRiding); else nil
	lazyOps lazyOps
	// storeLog limits the log lines of failed store writes (commit.go).
	storeLog storeErrLog
	parker   *transport.Parker // idle plain TCP connections wait here (RawTransport)
	held     *heldRefusals     // refused connections whose CONNACK waits (refusalhold.go)
	gor      *goroutines       // reused connection goroutines
	// refusals and audit write the lines clients cause, rate-limited
	// (audit.go): per remote address, and per client.
	refusals, audit *ratelog.Limiter
	drops           dropLog // queue drops waiting to be reported (drops.go)

	subs     *topic.Trie[subKey, subscriber]
	retained *retain.Index[*session.Message]
	shared   sharedGroups
	flapping flapTracker // guarded by mu
	stats    counters
	// budget is the bound of the bytes held for all clients
	// (Options.MemoryBudget); budgetLog reports what it dropped.
	budget    *session.Budget
	budgetLog budgetLog
	metrics   metricCounters // metrics.go, figures.go

	// fabric links the broker to the other nodes of a cluster
	// (Options.Fabric, fixed at New; nil for one node), and interest is
	// what this node told it it subscribes to (fabric_interest.go).
	fabric   Fabric
	interest fabricInterest
	// flog and journal are the cluster's message log and session journal
	// (fabric_log.go, adopt.go): both set, when the fabric keeps a log
	// and the store is a SessionJournal, or both nil; fixed at New.
	flog    FabricLog
	journal SessionJournal
	// wk keeps the wills of this node's connections in the cluster
	// (wills.go); nil without a fabric that does. Fixed at New.
	wk WillKeeper
	// logMu orders the log's deliveries with adoptions: DeliverLogged
	// holds it while it routes one message, adopt while it puts an
	// adopted session in the trie (docs/design/locking.md).
	logMu struct {
		sync.Mutex
		applied uint64 // the last log sequence routed (LogFrom, DeliverLogged)
		started bool   // LogFrom was called
	}
	logPipe logPipe

	wg       sync.WaitGroup // connection goroutines and the sweeper
	shutdown atomic.Bool
	done     chan struct{}

	mu struct {
		sync.Mutex
		listeners map[net.Listener]transport.Accepter // nil: accepted by net
		conns     connList
		clients   map[string]*conn            // online connection per session key (SessionKey)
		sessions  map[string]*session.Session // every session, online or not, per session key
		expiries  map[*session.Session]*time.Timer
		wills     map[string]*pendingWill   // delayed 5.0 wills per session key
		quotas    map[string]*session.Quota // per tenant
		sweeping  bool                      // the sweeper runs (startSweepLocked)
		tenants   map[string]*session.Tenant
		// claiming holds, by session key, the connections whose CONNECT
		// waits for Fabric.Claim (fabric_host.go); nil without a fabric.
		claiming map[string][]*conn
	}
}

// normalize fills defaults into o and checks every value.
func normalize(o Options) (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Authenticator == nil {
		o.Authenticator = AllowAll{}
	}
	if o.Authorizer == nil {
		o.Authorizer = AllowAll{}
	}
	switch o.UnauthorizedPublish {
	case "":
		o.UnauthorizedPublish = UnauthorizedClose
	case UnauthorizedClose, UnauthorizedAckAndDrop:
	default:
		return o, fmt.Errorf("broker: unauthorized publish %q: want %q or %q", o.UnauthorizedPublish, UnauthorizedClose, UnauthorizedAckAndDrop)
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 16 << 20
	}
	if o.MaxPacketSize < 2 || o.MaxPacketSize > packet.MaxRemainingLength+5 {
		return o, fmt.Errorf("broker: max packet size %d out of range 2..%d", o.MaxPacketSize, packet.MaxRemainingLength+5)
	}
	if o.MaxConnectSize == 0 {
		o.MaxConnectSize = DefaultMaxConnectSize
	}
	if o.MaxConnectSize < 2 || o.MaxConnectSize > packet.MaxRemainingLength+5 {
		return o, fmt.Errorf("broker: max connect size %d out of range 2..%d", o.MaxConnectSize, packet.MaxRemainingLength+5)
	}
	o.MaxConnectSize = min(o.MaxConnectSize, o.MaxPacketSize)
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.QueueMessages == 0 {
		o.QueueMessages = 50_000
	}
	if o.QueueBytes == 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.QueueMessages < 0 || o.QueueBytes < -1 {
		return o, errors.New("broker: queue limits must not be negative (queue bytes -1: no bound)")
	}
	if o.MemoryBudget == 0 {
		if o.MemoryBudget = defaultMemoryBudget(); o.MemoryBudget == 0 {
			o.MemoryBudget = -1 // the memory is not known: no bound
		}
	}
	if o.MemoryBudget < -1 {
		return o, errors.New("broker: memory budget must not be negative (-1: no bound)")
	}
	switch o.QueuePolicy {
	case "":
		o.QueuePolicy = PolicyDropNew
	case PolicyDropNew, PolicyDropOldest:
	default:
		return o, fmt.Errorf("broker: queue policy %q: want %q or %q", o.QueuePolicy, PolicyDropNew, PolicyDropOldest)
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 1024
	}
	if o.MaxInflight < 1 || o.MaxInflight > 65535 {
		return o, fmt.Errorf("broker: max inflight %d out of range 1..65535", o.MaxInflight)
	}
	if o.MinKeepAlive < 0 || o.MaxKeepAlive < 0 || (o.MaxKeepAlive > 0 && o.MinKeepAlive > o.MaxKeepAlive) {
		return o, fmt.Errorf("broker: keepalive bounds %v..%v invalid", o.MinKeepAlive, o.MaxKeepAlive)
	}
	if o.MaxTopicLength == 0 {
		o.MaxTopicLength = 65535
	}
	if o.MaxTopicLength < 1 || o.MaxTopicLength > 65535 || o.MaxTopicLevels < 0 || o.MaxConnections < 0 || o.MaxSubscriptionsPerClient < 0 {
		return o, errors.New("broker: topic, connection and subscription limits must be positive (topic length at most 65535)")
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 65535
	}
	if o.ReceiveMaximum < 1 || o.ReceiveMaximum > 65535 {
		return o, fmt.Errorf("broker: receive maximum %d out of range 1..65535", o.ReceiveMaximum)
	}
	if o.TopicAliasMaximum == 0 {
		o.TopicAliasMaximum = 100
	}
	if o.TopicAliasMaximum < 0 { // -1: no inbound aliases
		o.TopicAliasMaximum = 0
	}
	if o.TopicAliasMaximum > 65535 {
		return o, fmt.Errorf("broker: topic alias maximum %d above 65535", o.TopicAliasMaximum)
	}
	if o.TopicAliasOutMaximum == 0 {
		o.TopicAliasOutMaximum = DefaultTopicAliasOutMaximum
	}
	if o.TopicAliasOutMaximum < 0 { // -1: no outbound aliases
		o.TopicAliasOutMaximum = 0
	}
	if o.TopicAliasOutBytes == 0 {
		o.TopicAliasOutBytes = DefaultTopicAliasOutBytes
	}
	if o.TopicAliasOutMaximum > 65535 || o.TopicAliasOutBytes < 0 {
		return o, fmt.Errorf("broker: outbound topic aliases %d (at most 65535), %d bytes (not negative)", o.TopicAliasOutMaximum, o.TopicAliasOutBytes)
	}
	if o.TenantQueueMessages < 0 || o.TenantQueueBytes < 0 || o.AssignedIDMaxSessionExpiry < 0 {
		return o, errors.New("broker: tenant queue limits and assigned-id session expiry must not be negative")
	}
	if o.MaxSessionExpiry < 0 {
		return o, errors.New("broker: max session expiry must not be negative")
	}
	if o.DropLogInterval == 0 {
		o.DropLogInterval = 10 * time.Second
	}
	if o.DropLogInterval < 0 {
		return o, errors.New("broker: drop log interval must not be negative")
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = 30 * time.Second
	}
	if o.SweepInterval < 0 {
		return o, errors.New("broker: sweep interval must not be negative")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// New returns a broker configured by o, or an error naming the bad option.
func New(o Options) (*Broker, error) {
	o, err := normalize(o)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		log:      o.Logger,
		store:    o.Store,
		subs:     topic.NewTrie[subKey, subscriber](),
		retained: retain.New[*session.Message](),
		budget:   newBudget(&o),
		done:     make(chan struct{}),
	}
	b.cur.Store(&o)
	b.riding, _ = o.Store.(RidingStore)
	b.metrics.init(time.Now())
	b.refusals, b.audit = newEventLogs(o.Logger)
	b.parker = transport.NewParker(b.log)
	b.held = newHeldRefusals(o.HeldRefusals, o.HeldRefusalsPerAddress, time.Now) // its timer runs on the real clock
	b.gor = newGoroutines(b.done)
	b.shared.seed, b.shared.next = maphash.MakeSeed(), make(map[uint64]uint64)
	b.mu.listeners = make(map[net.Listener]transport.Accepter)
	b.mu.clients = make(map[string]*conn)
	b.mu.sessions = make(map[string]*session.Session)
	b.mu.expiries = make(map[*session.Session]*time.Timer)
	b.mu.wills = make(map[string]*pendingWill)
	b.mu.quotas = make(map[string]*session.Quota)
	b.mu.tenants = make(map[string]*session.Tenant)
	if o.Fabric != nil {
		// Bound before the store is restored: the restored subscriptions
		// become the node's interest, and restored wills go to the cluster.
		b.fabric = o.Fabric
		b.mu.claiming = make(map[string][]*conn)
		b.wk, _ = o.Fabric.(WillKeeper)
		if fl, ok := o.Fabric.(FabricLog); ok {
			if j, ok := b.store.(SessionJournal); ok {
				b.flog, b.journal = fl, j
				b.logPipe.cond.L = &b.logPipe.mu
			}
		}
		if err := b.fabric.Bind(b); err != nil {
			return nil, fmt.Errorf("broker: binding the cluster fabric: %w", err)
		}
	}
	if b.store != nil {
		if err := b.restore(context.Background()); err != nil {
			return nil, err
		}
	}
	b.syncInterest()
	return b, nil
}

// opts returns the options in force. The result is never modified.
func (b *Broker) opts() *Options { return b.cur.Load() }

// SetLimits applies the limits of o (every field but Logger,
// Authenticator, Authorizer, Store, Fabric and Now, which stay as they are) while
// the broker runs. Connections and sessions pick them up as they next use
// them: a new CONNECT, a new packet, a new session's queue; sessions
// already held keep their queue limits. It returns an error naming a bad
// value and changes nothing then.
func (b *Broker) SetLimits(o Options) error {
	cur := b.opts()
	o.Logger, o.Authenticator, o.Authorizer, o.Now, o.Store = cur.Logger, cur.Authenticator, cur.Authorizer, cur.Now, cur.Store
	o.RawTransport = cur.RawTransport // Serve and connections read it as they start
	o.Fabric = cur.Fabric             // bound at New
	o, err := normalize(o)
	if err != nil {
		return err
	}
	b.cur.Store(&o)
	b.budget.SetMax(max(o.MemoryBudget, 0))
	return nil
}

// tenantQuota returns the shared queue bound of tenant, nil when tenants
// are not bounded. Bounds changed by SetLimits apply to quotas made later.
func (b *Broker) tenantQuota(tenant string) *session.Quota {
	o := b.opts()
	if o.TenantQueueMessages == 0 && o.TenantQueueBytes == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.mu.quotas[tenant]
	if q == nil {
		q = &session.Quota{MaxMessages: int64(o.TenantQueueMessages), MaxBytes: int64(o.TenantQueueBytes)}
		b.mu.quotas[tenant] = q
	}
	return q
}

// sessionLimits returns the queue limits a new session gets.
func (b *Broker) sessionLimits() session.Limits {
	o := b.opts()
	policy := session.DropNew
	if o.QueuePolicy == PolicyDropOldest {
		policy = session.DropOldest
	}
	return session.Limits{
		MaxMessages:      o.QueueMessages,
		MaxBytes:         max(o.QueueBytes, 0),
		Policy:           policy,
		QueueQoS0Offline: o.QueueQoS0Offline,
		Budget:           b.budget,
	}
}

// Serve accepts connections on l until Shutdown, serving each in its own
// goroutines. A listener with a Name() string method names the connections
// it accepts in logs and in ConnectInfo.Listener; one with a CertUsername()
// string method returning "cn" or "subject" makes a verified client
// certificate the client's username. It always returns a
// non-nil error: ErrServerClosed after Shutdown. Serve may be called for
// several listeners at once.
func (b *Broker) Serve(l net.Listener) error {
	// With RawTransport, a plain TCP listener's connections are accepted
	// with raw accept4 calls and stay raw descriptors until they need the
	// netpoller (internal/transport): a connection that sends CONNECT and
	// then idles never costs the net package's per-connection
	// bookkeeping.
	var acc transport.Accepter
	if b.opts().RawTransport {
		acc = transport.Of(l)
	}
	if !b.trackListener(l, acc, true) {
		if acc != nil {
			_ = acc.Close() // never used
		}
		return ErrServerClosed
	}
	defer b.trackListener(l, acc, false)
	info := new(listenerInfo) // shared by this listener's connections
	if n, ok := l.(interface{ Name() string }); ok {
		info.name = n.Name()
	}
	if n, ok := l.(interface{ CertUsername() string }); ok {
		info.certUsername = n.CertUsername()
	}
	var delay time.Duration
	for {
		var nc net.Conn
		var err error
		if acc != nil {
			nc, err = acc.AcceptRaw()
		} else {
			nc, err = l.Accept()
		}
		if err != nil {
			if b.shutdown.Load() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				b.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-b.done:
				}
				continue
			}
			return fmt.Errorf("broker: accept: %w", err)
		}
		delay = 0
		if !b.held.admit(nc.RemoteAddr()) {
			// Its address's share of held refusals is full: a guesser
			// that does not wait for its answers [refusalhold.go].
			_ = nc.Close() // refusing: nothing to report to anyone
			continue
		}
		if c := b.serveConn(nc, info); c != nil {
			c.serveInline()
		}
	}
}

// isTemporary reports whether an accept error is worth retrying: a timeout,
// running out of file descriptors, or a connection aborted before accept.
func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED)
}

// trackListener registers l (add) or forgets it. Registering fails once
// Shutdown has begun, and the first registration starts the sweeper.
func (b *Broker) trackListener(l net.Listener, acc transport.Accepter, add bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		if b.shutdown.Load() {
			return false
		}
		b.mu.listeners[l] = acc
		b.startSweepLocked()
	} else {
		delete(b.mu.listeners, l)
		if acc != nil {
			_ = acc.Close() // Serve returned: nothing waits on it; a second close reports nothing
		}
	}
	return true
}

// ServeConn serves one already accepted connection (from any transport) in
// new goroutines and returns at once. After Shutdown it closes nc.
func (b *Broker) ServeConn(nc net.Conn) {
	if !b.held.admit(nc.RemoteAddr()) {
		_ = nc.Close() // its address's share of held refusals is full
		return
	}
	if c := b.serveConn(nc, new(listenerInfo)); c != nil {
		b.gor.run(job{c, taskServe}) // the connection's last reader calls b.wg.Done
	}
}

// listenerInfo is what the broker learns of a listener passed to Serve;
// its connections share it, read-only.
type listenerInfo struct {
	name         string
	certUsername string // "cn", "subject" or ""
}

// serveConn registers a new connection for its reader to serve; nil after
// Shutdown (nc closed). The connection's last reader calls b.wg.Done.
func (b *Broker) serveConn(nc net.Conn, li *listenerInfo) *conn {
	c := newConn(b, nc)
	c.li = li
	if b.opts().RawTransport {
		// Before c is shared: its writer may be started by anyone once
		// it is in b.mu.conns (Shutdown).
		c.tr.Open(nc, b.parker, c)
	}
	b.mu.Lock()
	if b.shutdown.Load() {
		b.mu.Unlock()
		_ = nc.Close() // refusing during shutdown; the close error is of no use
		return nil
	}
	b.mu.conns.add(c)
	b.wg.Add(1)
	b.mu.Unlock()
	b.stats.connections.Add(1)
	return c
}

// quickConnect reports whether an inline reader (conn.serveInline) may
// handle p: the authenticator is quick, there is no enhanced
// authentication and, with a store, the session does not persist (its
// write would wait). Whether the client's session key names a connection
// to take over, a delayed will to send or a stored session to discard is
// known only once the tenant is: attach then hands the CONNECT over
// (errAttachWaits). With a fabric no CONNECT is quick: Fabric.Claim may
// wait for another node.
func (b *Broker) quickConnect(p *packet.Connect) bool {
	o := b.opts()
	if b.fabric != nil || !quickAuthenticator(o.Authenticator) || enhancedAuth(p) {
		return false
	}
	persistent := !p.CleanStart
	if p.Version == packet.V5 {
		persistent = p.Properties.SessionExpiryInterval != 0
	}
	return b.store == nil || !persistent
}

// Shutdown stops accepting, closes every client connection (5.0 clients
// get DISCONNECT 0x8B) and waits for their goroutines to end, or for ctx.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if !b.shutdown.Swap(true) {
		close(b.done)
	}
	var errs []error
	for l, acc := range b.mu.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		if acc != nil {
			_ = acc.Close() // ends its Serve's wait; it cannot fail in a way that matters here
		}
	}
	for s, t := range b.mu.expiries { // sessions end with the broker anyway
		t.Stop()
		delete(b.mu.expiries, s)
	}
	for id, w := range b.mu.wills { // the broker stops: delayed wills go unsent, as on shutdown
		w.timer.Stop()
		delete(b.mu.wills, id)
	}
	var conns []*conn
	for c := b.mu.conns.head; c != nil; c = c.lnext {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		c.closeWith(packet.ServerShuttingDown, reasonShutdown)
	}
	b.held.close()  // held refusals are answered now
	b.parker.Stop() // ends its goroutine; connections still parked are woken by their close
	waited := make(chan struct{})
	go func() {
		b.wg.Wait()
		b.gor.wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	b.stopLazy()
	b.flushLazy()
	b.stopDropLog()
	b.reportDrops()
	b.stopBudgetLog()
	b.refusals.Close()
	b.audit.Close()
	return errors.Join(errs...)
}

func (b *Broker) forgetConn(c *conn) {
	b.mu.Lock()
	b.mu.conns.remove(c)
	b.mu.Unlock()
}

// connList is the broker's connections (b.mu), linked through their conns:
// adding and removing one is a few pointer writes, with no map to hash
// into or grow.
type connList struct{ head *conn }

func (l *connList) add(c *conn) {
	c.lprev, c.lnext = nil, l.head
	if l.head != nil {
		l.head.lprev = c
	}
	l.head = c
}

// remove takes c out of the list; a connection not in it stays out (only
// the head has no previous one).
func (l *connList) remove(c *conn) {
	if c.lprev == nil && l.head != c {
		return
	}
	if c.lprev != nil {
		c.lprev.lnext = c.lnext
	} else {
		l.head = c.lnext
	}
	if c.lnext != nil {
		c.lnext.lprev = c.lprev
	}
	c.lprev, c.lnext = nil, nil
}
