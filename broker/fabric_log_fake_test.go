package broker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// fakeLog is a cluster's message log in one process, as internal/cluster
// keeps it in JetStream: Log appends and answers with the sequence; each
// node's follower hands every message to its broker (broker.LogHost) in
// order; ReadLog reads what matches. A node's follower can be paused.
type fakeLog struct {
	mu   sync.Mutex
	cond sync.Cond
	// Under mu.
	msgs   []*session.Message // sequence i+1
	from   []*logNode         // who wrote each (nil: unknown)
	err    error              // Log fails with it when set
	closed bool
	held   bool                        // Log keeps its answer (hold)
	keep   bool                        // with held: Log stores, only the answer is held
	owed   []func(uint64, bool, error) // the answers held
	calls  int                         // Log calls
	ids    map[string]uint64           // write id -> sequence (the stream's duplicate window)
}

// hold makes Log keep its answers until answerHeld.
func (l *fakeLog) hold() {
	l.mu.Lock()
	l.held = true
	l.mu.Unlock()
}

// holdAnswers makes Log store messages but keep its answers, as a node
// that dies after a quorum stored its write and before it heard so.
func (l *fakeLog) holdAnswers() {
	l.mu.Lock()
	l.held, l.keep = true, true
	l.mu.Unlock()
}

// answerHeld answers the held Log calls with err (storing nothing) and
// stops holding.
func (l *fakeLog) answerHeld(err error) {
	l.mu.Lock()
	owed := l.owed
	l.owed, l.held, l.keep = nil, false, false
	l.mu.Unlock()
	for _, done := range owed {
		done(0, false, err)
	}
}

// stored returns how many messages the log holds.
func (l *fakeLog) stored() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// logCalls returns how many messages were handed to Log.
func (l *fakeLog) logCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func newFakeLog() *fakeLog {
	l := &fakeLog{}
	l.cond.L = &l.mu
	return l
}

func (l *fakeLog) log(by *logNode, msg *session.Message, id string, done func(uint64, bool, error)) {
	l.mu.Lock()
	l.calls++
	if l.held && !l.keep {
		l.owed = append(l.owed, done)
		l.mu.Unlock()
		return
	}
	if err := l.err; err != nil {
		l.mu.Unlock()
		done(0, false, err)
		return
	}
	if seq, ok := l.ids[id]; ok && id != "" {
		l.mu.Unlock()
		done(seq, true, nil)
		return
	}
	l.msgs = append(l.msgs, msg)
	l.from = append(l.from, by)
	seq := uint64(len(l.msgs))
	if id != "" {
		if l.ids == nil {
			l.ids = make(map[string]uint64)
		}
		l.ids[id] = seq
	}
	l.cond.Broadcast()
	if l.held {
		l.owed = append(l.owed, done)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	done(seq, false, nil)
}

func (l *fakeLog) failWith(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *fakeLog) readLog(ctx context.Context, after uint64, filters []string, fn func(uint64, *session.Message) error) (uint64, error) {
	l.mu.Lock()
	msgs := l.msgs[:len(l.msgs):len(l.msgs)]
	l.mu.Unlock()
	for i := int(after); i < len(msgs); i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if topic.MatchAny(filters, msgs[i].Topic) {
			if err := fn(uint64(i+1), msgs[i]); err != nil {
				return 0, err
			}
		}
	}
	return uint64(len(msgs)), nil
}

func (l *fakeLog) close() {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

// logNode is one node's Fabric with the log: a fakeNode plus FabricLog,
// and its follower.
type logNode struct {
	*fakeNode
	l      *fakeLog
	paused bool // under l.mu
	stop   chan struct{}
	pos    atomic.Uint64 // the last sequence the follower handed over
}

func (n *logNode) LogOnce(msg *session.Message, id string, done func(uint64, bool, error)) {
	n.l.log(n, msg, id, done)
}

func (n *logNode) ReadLog(ctx context.Context, after uint64, filters []string, fn func(uint64, *session.Message) error) (uint64, error) {
	return n.l.readLog(ctx, after, filters, fn)
}

// Bind starts the follower after the log's current end, as the cluster's
// does (new messages only).
func (n *logNode) Bind(h broker.FabricHost) error {
	if err := n.fakeNode.Bind(h); err != nil {
		return err
	}
	lh := h.(broker.LogHost)
	n.l.mu.Lock()
	next := len(n.l.msgs)
	n.l.mu.Unlock()
	lh.LogFrom(uint64(next))
	go func() {
		for {
			n.l.mu.Lock()
			for !n.l.closed && (n.paused || next >= len(n.l.msgs)) {
				select {
				case <-n.stop:
					n.l.mu.Unlock()
					return
				default:
				}
				n.l.cond.Wait()
			}
			if n.l.closed {
				n.l.mu.Unlock()
				return
			}
			select {
			case <-n.stop:
				n.l.mu.Unlock()
				return
			default:
			}
			msg, here := n.l.msgs[next], n.l.from[next] == n
			next++
			n.l.mu.Unlock()
			lh.DeliverLogged(msg, uint64(next), here)
			n.pos.Store(uint64(next))
		}
	}()
	return nil
}

// pause stops (true) or resumes n's follower.
func (n *logNode) pause(p bool) {
	n.l.mu.Lock()
	n.paused = p
	n.l.cond.Broadcast()
	n.l.mu.Unlock()
}

// halt ends n's follower for good (its node died).
func (n *logNode) halt() {
	n.l.mu.Lock()
	close(n.stop)
	n.l.cond.Broadcast()
	n.l.mu.Unlock()
}

// fakeJournal is the cluster's session journal in one process: one
// memstore shared by every node's broker, which LoadSession reads one
// session of, with each session's LastSeq kept as the journal keeps it.
type fakeJournal struct {
	st *memstore.Store
	mu sync.Mutex
	// Under mu.
	last   map[string]uint64
	commit error // Commit fails with it when set
}

func newFakeJournal() *fakeJournal {
	return &fakeJournal{st: memstore.New(), last: map[string]uint64{}}
}

// store is one node's Store over the shared journal.
func (j *fakeJournal) store() *journalStore { return &journalStore{j: j} }

type journalStore struct{ j *fakeJournal }

func (s *journalStore) Load(ctx context.Context, r broker.Restorer) error { return nil }

func (s *journalStore) Commit(b *broker.Batch, durable bool) error {
	j := s.j
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.commit != nil {
		return j.commit
	}
	for _, op := range b.Ops {
		switch op.Kind {
		case broker.OpPutSession:
			j.last[op.ClientID] = max(j.last[op.ClientID], op.Session.LastSeq)
		case broker.OpEnqueue:
			j.last[op.ClientID] = max(j.last[op.ClientID], op.Delivery.Seq)
		case broker.OpDeleteSession:
			delete(j.last, op.ClientID)
		}
	}
	return j.st.Commit(b, durable)
}

func (s *journalStore) Close() error { return nil }

func (s *journalStore) Forget(string) {}

func (s *journalStore) LoadSession(ctx context.Context, key string, r broker.Restorer) (bool, error) {
	j := s.j
	j.mu.Lock()
	defer j.mu.Unlock()
	st, err := broker.LoadAll(ctx, j.st)
	if err != nil {
		return false, err
	}
	for _, ss := range st.Sessions {
		if ss.ClientID != key {
			continue
		}
		rec := *ss
		rec.Subscriptions, rec.Queue, rec.InboundQoS2 = nil, nil, nil
		rec.LastSeq = j.last[key]
		if err := r.RestoreSession(&rec); err != nil {
			return false, err
		}
		for i := range ss.Subscriptions {
			if err := r.RestoreSubscription(key, &ss.Subscriptions[i]); err != nil {
				return false, err
			}
		}
		for i := range ss.Queue {
			if err := r.RestoreDelivery(key, &ss.Queue[i]); err != nil {
				return false, err
			}
		}
		for _, pid := range ss.InboundQoS2 {
			if err := r.RestoreInbound(key, pid, ss.InboundWrites[pid]); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// has reports whether the journal holds session key.
func (j *fakeJournal) has(t *testing.T, key string) bool {
	t.Helper()
	found, err := j.store().LoadSession(context.Background(), key, discardRestorer{})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

type discardRestorer struct{}

func (discardRestorer) RestoreSession(*broker.StoredSession) error                   { return nil }
func (discardRestorer) RestoreSubscription(string, *broker.StoredSubscription) error { return nil }
func (discardRestorer) RestoreDelivery(string, *broker.StoredDelivery) error         { return nil }
func (discardRestorer) RestoreInbound(string, uint16, uint64) error                  { return nil }
func (discardRestorer) RestoreRetained(*broker.StoredMessage) error                  { return nil }

// logCluster is a fakeCluster whose nodes share a fakeLog and a
// fakeJournal.
type logCluster struct {
	*fakeCluster
	l *fakeLog
	j *fakeJournal
}

func newLogCluster(t *testing.T) *logCluster {
	c := &logCluster{fakeCluster: newFakeCluster(t), l: newFakeLog(), j: newFakeJournal()}
	t.Cleanup(c.l.close)
	return c
}

// start starts a broker on a node of the cluster, with the journal as
// its store.
func (c *logCluster) start(t *testing.T, name string, o broker.Options) (*logNode, *broker.Broker, string) {
	t.Helper()
	n := &logNode{fakeNode: c.node(name), l: c.l, stop: make(chan struct{})}
	o.Fabric = n
	o.Store = c.j.store()
	b, addr := mqtttest.StartBroker(t, o)
	return n, b, addr
}

var errNoQuorum = errors.New("no quorum")

// gatedStore is a node's journalStore whose commits can be held (hold,
// open), as a journal write that waits for its quorum.
type gatedStore struct {
	*journalStore
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	waiting int           // commits held now
}

func (g *gatedStore) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedStore) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedStore) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

func (g *gatedStore) Commit(b *broker.Batch, durable bool) error {
	g.mu.Lock()
	gate := g.gate
	if gate != nil {
		g.waiting++
	}
	g.mu.Unlock()
	if gate != nil {
		<-gate
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}
	return g.journalStore.Commit(b, durable)
}

// startGated is start with the node's commits behind a gatedStore.
func (c *logCluster) startGated(t *testing.T, name string, o broker.Options) (*logNode, *gatedStore, *broker.Broker, string) {
	t.Helper()
	n := &logNode{fakeNode: c.node(name), l: c.l, stop: make(chan struct{})}
	g := &gatedStore{journalStore: c.j.store()}
	o.Fabric = n
	o.Store = g
	b, addr := mqtttest.StartBroker(t, o)
	return n, g, b, addr
}
