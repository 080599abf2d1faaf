package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
)

var (
	_ broker.Fabric     = (*Node)(nil)
	_ broker.FabricLog  = (*Node)(nil)
	_ broker.WillKeeper = (*Node)(nil)
)

// Limits of the embedded server and of this node's connections to it.
const (
	// maxPayload is the largest message body (envelope and payload) that
	// crosses to another node: NATS's own ceiling. A larger message is not
	// forwarded (counted in Counters.TooLarge).
	maxPayload = 64 << 20
	// inboxLen bounds the messages, per inbox (plain, share), received
	// from the server and not yet handed to the broker; past it they are
	// dropped (counted in Counters.InboxDropped). Config.InboxBytes bounds
	// their bytes.
	inboxLen = 32768
	// readyWait bounds how long Start waits for the embedded server
	// (within Start's context): its JetStream restores the node's copy
	// of every stream first, which for a large message log takes time
	// (and under load: 10 s was seen to be too short with the race
	// detector on two busy CPUs).
	readyWait = 5 * time.Minute
	// assetsWait bounds how long Start waits for the JetStream assets
	// (a meta leader must exist); after it they are retried in the
	// background.
	assetsWait = 5 * time.Second
	// closeWait bounds Close.
	closeWait = 10 * time.Second
	// releaseQueue bounds the session releases waiting to be written.
	releaseQueue = 4096
	// reconnectBuf bounds what nats.go buffers for an in-process
	// connection while it reconnects to the embedded server (Forward's
	// messages among them); past it a publish fails at once (counted in
	// Counters.ForwardFailed). Connected, nats.go buffers at most 32 KiB
	// and one message: a fuller buffer is written to the server's
	// in-memory pipe before the publish returns.
	reconnectBuf = 8 << 20
	// routePing and routePingsOut bound how long a route to a lost peer
	// stays up: routePingsOut pings unanswered, routePing apart.
	routePing     = 5 * time.Second
	routePingsOut = 2
)

// ErrNotReady is returned by Claim while the node's JetStream assets do
// not exist yet (no JetStream meta leader: too few nodes are up), or
// while it does not follow the message log yet (ready).
var ErrNotReady = errors.New("cluster: JetStream not ready (no quorum yet)")

// ErrClosed is returned once the node was closed.
var ErrClosed = errors.New("cluster: node closed")

// Node is one running cluster node: the embedded NATS server and this
// node's connections to it. It implements broker.Fabric; all its methods
// are safe for concurrent use.
type Node struct {
	cfg         Config
	log         *slog.Logger
	srv         *server.Server
	incarnation uint64 // random per Start: tells a restarted node's messages apart
	token       string // the embedded server's client token
	multi       bool   // more than one node configured

	data  *nats.Conn // plain subscriptions and Forward; NoEcho
	share *nats.Conn // share-group queue subscriptions; echo on
	ctl   *nats.Conn // JetStream, kicks, status requests
	js    jetstream.JetStream
	// logc carries the message log: its writes and their acks, the
	// follower's consumer, ReadLog's batches (log*.go).
	logc  *nats.Conn
	logJS jetstream.JetStream
	lw    *logWriter

	// Every plain subscription delivers to plainCh, in arrival order, and
	// every queue subscription to shareCh; a pump each moves them into
	// the inbox its dispatcher reads (inbox.go).
	plainCh, shareCh chan *nats.Msg
	plainIn, shareIn *inbox

	hostp    atomic.Pointer[hostRef]
	logHostp atomic.Pointer[logHostRef] // set by Bind when the host is a LogHost
	// journal is the node's session journal, once made: a kick makes it
	// forget the session before the kick is answered (journal.go).
	journal  atomic.Pointer[Journal]
	bound    chan struct{} // closed by the first Bind
	bindOnce sync.Once

	// assets is closed once the JetStream assets exist; kv is set before.
	assets chan struct{}
	// following is closed once the message log's follower has its
	// consumer (or the bound broker takes no logged messages): from then
	// on a message logged reaches this node's sessions (ready).
	following  chan struct{}
	followOnce sync.Once
	kv         jetstream.KeyValue

	// shares maps a queue subscription to its share key; read by the
	// share dispatcher for every message.
	shares sync.Map // *nats.Subscription -> string

	fwd struct {
		sync.Mutex
		seq uint64 // last sequence number put on a live message
	}

	mu struct {
		sync.Mutex
		watches map[watchKey]*watch
		held    map[string]uint64 // session key -> epoch this node claimed
		// revs is the owners bucket revision of each claim in held: a
		// number that only grows, across sessions and across the deletion
		// of a session's owner record, unlike the epoch (which starts at 1
		// again once a released record is deleted). It is the session
		// journal's fencing token (journal.go).
		revs   map[string]uint64
		closed bool
	}

	releases chan release
	purges   chan purge
	wills    willState // the will registry (wills.go)
	// retainInFlight is the bytes of retained changes published and not
	// yet settled (retained.go).
	retainInFlight atomic.Int64
	// purgeBytes is the bytes of the subjects in purges (purge.go).
	purgeBytes atomic.Int64
	count      counters
	stop       context.CancelFunc
	ctx        context.Context
	wg         sync.WaitGroup
}

// hostRef boxes the FabricHost for an atomic pointer.
type hostRef struct{ h broker.FabricHost }

// host returns the bound FabricHost, nil before Bind.
func (n *Node) host() broker.FabricHost {
	if r := n.hostp.Load(); r != nil {
		return r.h
	}
	return nil
}

// Start starts a node: the embedded NATS server with routes to c.Peers
// and JetStream in c.DataDir, and this node's in-process connections. It
// returns once the server accepts connections. The JetStream assets
// (retained stream, owners bucket) need a JetStream meta leader, hence
// enough nodes up: Start waits for them a few seconds, then goes on
// creating them in the background (logged) while the node already
// routes live messages; Claim returns ErrNotReady until they exist and
// the node follows the message log (ready).
func Start(ctx context.Context, c Config) (*Node, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", c.Node)
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(secret[:])
	opts, err := serverOptions(c, token)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	fatal := make(chan string, 1)
	srv.SetLoggerV2(serverLogger{l: log.With("component", "nats"), fatal: fatal}, false, false, false)
	srv.Start()
	wait := readyWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	// Ready once its listeners are up, which comes after JetStream
	// restored the node's streams; a listener that cannot bind (the
	// route address taken) ends the wait at once.
	for end := time.Now().Add(wait); !srv.ReadyForConnections(100 * time.Millisecond); {
		select {
		case msg := <-fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("cluster: embedded NATS server on %s: %s", c.Listen, msg)
		default:
		}
		if time.Now().After(end) {
			srv.Shutdown()
			return nil, fmt.Errorf("cluster: embedded NATS server on %s not ready after %s", c.Listen, wait)
		}
	}
	var inc [8]byte
	if _, err := rand.Read(inc[:]); err != nil {
		srv.Shutdown()
		return nil, err
	}
	n := &Node{
		cfg:         c,
		log:         log,
		srv:         srv,
		incarnation: binary.BigEndian.Uint64(inc[:]),
		token:       token,
		multi:       len(c.routes()) > 0,
		plainCh:     make(chan *nats.Msg, handoffLen),
		shareCh:     make(chan *nats.Msg, handoffLen),
		plainIn:     newInbox(inboxLen, c.inboxBytes()),
		shareIn:     newInbox(inboxLen, c.inboxBytes()),
		assets:      make(chan struct{}),
		following:   make(chan struct{}),
		bound:       make(chan struct{}),
		releases:    make(chan release, releaseQueue),
		purges:      make(chan purge, purgeQueue),
		lw:          newLogWriter(),
	}
	n.mu.watches = make(map[watchKey]*watch)
	n.mu.held = make(map[string]uint64)
	n.mu.revs = make(map[string]uint64)
	n.wills.init()
	n.ctx, n.stop = context.WithCancel(context.Background())
	if err := n.connect(); err != nil {
		n.shutdown()
		return nil, err
	}
	if err := n.serveControl(); err != nil {
		n.shutdown()
		return nil, err
	}
	n.wg.Add(7)
	go n.logDoneLoop()
	go n.pump(n.plainCh, n.plainIn)
	go n.pump(n.shareCh, n.shareIn)
	go n.dispatchPlain()
	go n.dispatchShare()
	go n.releaseLoop()
	go n.purgeLoop()
	n.wg.Add(1)
	go n.ensureAssets()
	n.wg.Add(3)
	go n.willWriter()
	go n.willReaper()
	go n.watchOwners()
	select {
	case <-n.assets:
	case <-time.After(assetsWait):
		n.log.Warn("cluster: JetStream assets not ready yet (waiting for a meta leader: are enough nodes up?); retrying in the background")
	case <-ctx.Done():
	}
	return n, nil
}

// serverOptions are the embedded server's options for c.
func serverOptions(c Config, token string) (*server.Options, error) {
	host, port, err := hostPort(c.Listen)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:     c.Node,
		DontListen:     true, // in-process connections only (but see below)
		NoSigs:         true,
		JetStream:      true,
		StoreDir:       c.DataDir,
		MaxControlLine: maxControlLine,
		MaxPayload:     maxPayload,
		// The broker's own connections must never be cut as slow
		// consumers by the server: their readers only queue.
		MaxPending: 256 << 20,
	}
	routes := c.routes()
	if len(routes) == 0 {
		// One configured node: JetStream standalone (a JetStream cluster
		// needs routes), nothing to listen for.
		return opts, nil
	}
	// nats-server starts its route accept loop only after its client
	// listener is open (Server.Start waits for it), so DontListen would
	// leave the routes down. A clustered node therefore opens a client
	// listener on loopback, on an ephemeral port, that requires a random
	// token drawn at each start (only this node's own connections know it;
	// they are in-process and never use the listener).
	opts.DontListen = false
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Authorization = token
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port,
		// A route to a lost machine drops after 10 to 15 s (nats-server's
		// default: 30 s pings, 2 unanswered) so that the node is taken for
		// dead, and its clients' wills published, WillAfter later (wills_reap.go).
		PingInterval: routePing, MaxPingsOut: routePingsOut,
		// What the other nodes dial, also when they learn of this node
		// from a third (route gossip).
		Advertise: c.Advertise}
	opts.Routes = routes
	if c.TLS != nil {
		t := c.TLS.Clone()
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
		if t.ClientCAs != nil {
			t.ClientAuth = tls.RequireAndVerifyClientCert
		}
		opts.Cluster.TLSConfig = t
		opts.Cluster.TLSTimeout = 2
		for _, u := range opts.Routes {
			u.Scheme = "tls"
		}
	}
	return opts, nil
}

// connect opens the node's three in-process connections.
func (n *Node) connect() error {
	open := func(name string, extra ...nats.Option) (*nats.Conn, error) {
		o := append([]nats.Option{
			nats.InProcessServer(n.srv),
			nats.Token(n.token),
			nats.Name(n.cfg.Node + "-" + name),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(50 * time.Millisecond),
			nats.ReconnectBufSize(reconnectBuf),
			nats.ErrorHandler(n.asyncError),
		}, extra...)
		nc, err := nats.Connect("", o...)
		if err != nil {
			return nil, fmt.Errorf("cluster: in-process connection %s: %w", name, err)
		}
		return nc, nil
	}
	var err error
	if n.data, err = open("data", nats.NoEcho()); err != nil {
		return err
	}
	if n.share, err = open("share"); err != nil {
		return err
	}
	if n.ctl, err = open("ctl"); err != nil {
		return err
	}
	n.js, err = jetstream.New(n.ctl,
		jetstream.WithPublishAsyncMaxPending(65536),
		jetstream.WithPublishAsyncTimeout(retainAckWait),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			n.retainSettled(m.Data)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			n.retainSettled(m.Data)
			n.count.retainFailed.Add(1)
			n.logDrop(&n.count.lastRetainFailed, "cluster: retained message not replicated", "subject", shorten(m.Subject), "err", err)
		}))
	if err != nil {
		return err
	}
	if n.logc, err = open("log"); err != nil {
		return err
	}
	n.logJS, err = jetstream.New(n.logc,
		// Above the writer's own bound, so that nats.go never stalls Log.
		jetstream.WithPublishAsyncMaxPending(2*logPendingMsgs),
		jetstream.WithPublishAsyncTimeout(logAckWait),
		jetstream.WithPublishAsyncAckHandler(n.logAcked),
		jetstream.WithPublishAsyncErrHandler(n.logFailed))
	return err
}

// asyncError counts what NATS reports asynchronously: a slow consumer is
// a full inbox, whose messages NATS dropped.
func (n *Node) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		n.count.slowConsumer.Add(1)
		n.log.Warn("cluster: inbox full, messages from other nodes dropped", "err", err)
		return
	}
	n.log.Warn("cluster: NATS connection error", "err", err)
}

// Bind implements broker.Fabric. When h is also a LogHost (the broker
// is), the node follows the message log for it (log_follow.go); a host
// that is not one gets no logged messages.
func (n *Node) Bind(h broker.FabricHost) error {
	if h == nil {
		return errors.New("cluster: Bind with a nil host")
	}
	n.hostp.Store(&hostRef{h})
	if lh, ok := h.(LogHost); ok {
		n.logHostp.Store(&logHostRef{lh})
	} else {
		n.logHostp.Store(nil)
	}
	n.bindOnce.Do(func() { close(n.bound) })
	return nil
}

// Close stops the node: its connections are drained and the embedded
// server shut down, all within a bounded time.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return nil
	}
	n.mu.closed = true
	n.mu.Unlock()
	n.shutdown()
	return nil
}

// shutdown closes the connections and the server and waits for the
// node's goroutines. The data connections are drained first, while the
// dispatchers still run to empty their inboxes.
func (n *Node) shutdown() {
	n.flushWills(willFlushWait)
	for _, nc := range []*nats.Conn{n.data, n.share} {
		if nc != nil {
			drainClose(nc)
		}
	}
	if n.stop != nil {
		n.stop()
	}
	if n.ctl != nil {
		drainClose(n.ctl)
	}
	if n.logc != nil {
		drainClose(n.logc)
	}
	// Writes still waiting for their quorum fail (ErrClosed); the
	// completion goroutine reports them and stops.
	n.closeLog()
	n.srv.Shutdown()
	done := make(chan struct{})
	go func() { n.srv.WaitForShutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		n.log.Error("cluster: embedded NATS server did not stop in time")
	}
	n.wg.Wait()
}

// drainClose drains nc (its subscriptions' buffered messages are
// delivered) with a bound, then closes it.
func drainClose(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(closeWait / 2):
		nc.Close()
	}
}

// shorten cuts a subject for a log line.
func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// serverLogger passes the embedded server's log lines to slog, and its
// first fatal one (a listener that cannot bind) to fatal.
type serverLogger struct {
	l     *slog.Logger
	fatal chan string
}

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any) {
	if strings.HasPrefix(format, "Maximum payloads over") {
		// maxPayload is above NATS's advice on purpose (the broker's own
		// limit decides): not worth a warning at every start.
		s.l.Debug(fmt.Sprintf(format, v...))
		return
	}
	s.l.Warn(fmt.Sprintf(format, v...))
}
func (s serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLogger) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any) {}

// ready reports that the node serves clients: its JetStream assets exist
// and it follows the message log, so that a QoS 1/2 message logged once
// a client of this node subscribed reaches it (a CONNECT accepted
// earlier could miss what was logged before the follower's consumer
// started, or get it seconds late).
func (n *Node) ready() bool {
	select {
	case <-n.assets:
	default:
		return false
	}
	select {
	case <-n.following:
		return true
	default:
		return false
	}
}

// markFollowing records that the node follows the message log (ready).
func (n *Node) markFollowing() {
	n.followOnce.Do(func() { close(n.following) })
}
