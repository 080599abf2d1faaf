package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
)

// The session journal's JetStream assets and limits.
const (
	// sessionsStream holds every persistent session's journal: one
	// subject per session key, rootSessions + "." + the hex of the first
	// 16 bytes of its SHA-256.
	sessionsStream = "PETREL_SESSIONS"
	rootSessions   = "petrel.sess"

	// journalTimeout bounds a durable commit's wait for JetStream's
	// acknowledgement (a quorum stored it), and every request of the
	// journal.
	journalTimeout = 5 * time.Second
	// journalPending bounds the journal writes waiting for their
	// acknowledgement; past it a write waits journalStall, then fails.
	journalPending = 65536
	journalStall   = 2 * time.Second
	// journalInFlightBytes bounds the bytes of those writes (nats.go keeps
	// each until its acknowledgement; a session record carries its will):
	// past it a write fails at once, unless none is in flight.
	journalInFlightBytes = 64 << 20
	// snapshotMax is the largest snapshot written: a larger session
	// state is not compacted (counted in SnapshotsSkipped) and its
	// subject keeps its operations until the state shrinks.
	snapshotMax = 8 << 20
	// compactMin is the least number of messages on a session's subject
	// that triggers a snapshot: max(compactMin, 2 × its live entries).
	compactMin = 64
	// compactQueue bounds the sessions waiting for a snapshot; past it a
	// snapshot is skipped and tried again after the session's next
	// commit. Each of the compactWorkers writes one snapshot at a time.
	compactQueue   = 4096
	compactWorkers = 2
	// markerTTL is how long JetStream keeps an adoption's fencing marker
	// and the snapshot of a deleted session: longer than any write of a
	// node that lost the session can be in flight.
	markerTTL = time.Hour
)

var (
	_ broker.Store          = (*Journal)(nil)
	_ broker.SessionJournal = (*Journal)(nil)
)

// ErrJournalClosed is returned by Commit after Close.
var ErrJournalClosed = errors.New("cluster: session journal closed")

// sessionSubject is the journal subject of session key.
func sessionSubject(key string) string {
	h := sha256.Sum256([]byte(key))
	return rootSessions + "." + hex.EncodeToString(h[:16])
}

// sessionsStreamConfig is PETREL_SESSIONS at r replicas.
func sessionsStreamConfig(r int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        sessionsStream,
		Subjects:    []string{rootSessions + ".*"},
		Replicas:    r,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
		AllowMsgTTL: true,
	}
}

// JournalCounters are a Journal's event counts since it was made.
type JournalCounters struct {
	Commits           uint64 // Commit calls with session operations
	Written           uint64 // journal messages published (operations, snapshots, markers)
	CommitFailed      uint64 // durable commits that returned an error
	AsyncFailed       uint64 // journal writes JetStream did not acknowledge (durable or not)
	Snapshots         uint64 // snapshots written, their subject compacted
	SnapshotsSkipped  uint64 // not written: larger than 8 MiB, queue full, or another write came first
	PurgeFailed       uint64 // compactions whose purge failed (the snapshot still counts)
	Adopted           uint64 // LoadSession calls that found a session
	DeliveriesDropped uint64 // deliveries not restored: their log message gone or not a valid topic
	Fenced            uint64 // records LoadSession ignored: written under an older claim
	LocalSessions     uint64 // sessions of the local store Load skipped
}

type journalCounters struct {
	commits, written, commitFailed, asyncFailed           atomic.Uint64
	snapshots, snapshotsSkipped, purgeFailed              atomic.Uint64
	adopted, deliveriesDropped, fenced, localSessions     atomic.Uint64
	lastAsyncFailed, lastSnapshotSkipped, lastPurgeFailed atomic.Int64
}

// Journal is the cluster's broker.Store: the sessions live in JetStream
// (PETREL_SESSIONS, replicated at cluster.replicas), the retained
// messages in the node's local store (the retained set itself is
// replicated by the Fabric). Sessions are never loaded at start: a
// session is adopted with LoadSession when its client connects. All its
// methods are safe for concurrent use.
type Journal struct {
	n     *Node
	local broker.Store
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	err   error // the connection could not be opened: every write fails with it

	compacts chan compaction
	// failures counts the writes JetStream did not take; a shadow that
	// has not seen the latest count is stale: the journal may differ from
	// it, and its next commit writes a snapshot. (An atomic, not a flag
	// under mu: nats.go calls writeFailed with its own lock held, which
	// publish holds under mu.)
	failures atomic.Uint64
	// inFlight is the bytes of the writes waiting for their
	// acknowledgement (journalInFlightBytes).
	inFlight atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
	count    journalCounters

	mu struct {
		sync.Mutex
		shadows map[string]*shadow // by subject
		closed  bool
	}
}

// shadow is what a Journal keeps of a session it writes: its state
// (without messages) and how many messages its subject holds since the
// last snapshot, to know when to compact.
type shadow struct {
	key   string
	st    jstate
	epoch uint64 // the fencing token this node writes with
	msgs  int
	// compacting: a snapshot of this session waits for its write.
	compacting bool
	// seen is Journal.failures when its last snapshot was taken (or the
	// shadow made): another value means a write failed since.
	seen uint64
	// last is the acknowledgement of the session's last write.
	last *ackWaiter
	// complete: st is the session's whole state, so a snapshot of it may
	// replace the subject's messages. True once this node adopted the
	// session (LoadSession while holding its claim) or wrote its
	// OpDeleteSession first; a shadow made by other writes (a node
	// writing after it lost the session) never compacts.
	complete bool
}

// Journal returns the node's session journal, writing through its own
// connection to the embedded server. local keeps the retained messages
// (and is closed by Journal.Close); its sessions are ignored.
func (n *Node) Journal(local broker.Store) *Journal {
	j := &Journal{n: n, local: local, log: n.log.With("component", "journal"),
		compacts: make(chan compaction, compactQueue), stop: make(chan struct{})}
	j.mu.shadows = make(map[string]*shadow)
	j.nc, j.err = nats.Connect("",
		nats.InProcessServer(n.srv),
		nats.Token(n.token),
		nats.Name(n.cfg.Node+"-journal"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(reconnectBuf),
		nats.ErrorHandler(n.asyncError))
	if j.err == nil {
		j.js, j.err = jetstream.New(j.nc,
			jetstream.WithPublishAsyncMaxPending(journalPending),
			jetstream.WithPublishAsyncTimeout(journalTimeout),
			jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
				j.inFlight.Add(-int64(len(m.Data)))
			}),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
				j.inFlight.Add(-int64(len(m.Data)))
				if m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) != "" {
					// A snapshot (compact counts it): the journal lacks
					// nothing without it.
					return
				}
				j.writeFailed(m.Subject, err)
			}))
	}
	if j.err != nil {
		j.err = fmt.Errorf("cluster: session journal: %w", j.err)
		return j
	}
	n.journal.Store(j)
	j.wg.Add(compactWorkers)
	for range compactWorkers {
		go j.compactLoop()
	}
	return j
}

// Counters returns the journal's event counts.
func (j *Journal) Counters() JournalCounters {
	c := &j.count
	return JournalCounters{
		Commits: c.commits.Load(), Written: c.written.Load(), CommitFailed: c.commitFailed.Load(),
		AsyncFailed: c.asyncFailed.Load(), Snapshots: c.snapshots.Load(), SnapshotsSkipped: c.snapshotsSkipped.Load(),
		PurgeFailed: c.purgeFailed.Load(), Adopted: c.adopted.Load(), DeliveriesDropped: c.deliveriesDropped.Load(),
		Fenced: c.fenced.Load(), LocalSessions: c.localSessions.Load(),
	}
}

// Load implements broker.Store: it reports the local store's retained
// messages. Sessions are adopted from the journal when their client
// connects (LoadSession), never at start; those of the local store (a
// node that ran alone before) are skipped, counted and logged.
func (j *Journal) Load(ctx context.Context, r broker.Restorer) error {
	f := &retainedOnly{r: r}
	err := j.local.Load(ctx, f)
	if f.sessions > 0 {
		j.count.localSessions.Add(uint64(f.sessions))
		j.log.Warn("sessions in the local store are not served in a cluster; they are adopted from the cluster's journal",
			"sessions", f.sessions)
	}
	return err
}

// retainedOnly passes on a local store's retained messages only.
type retainedOnly struct {
	r        broker.Restorer
	sessions int
}

func (f *retainedOnly) RestoreSession(*broker.StoredSession) error {
	f.sessions++
	return nil
}
func (f *retainedOnly) RestoreSubscription(string, *broker.StoredSubscription) error { return nil }
func (f *retainedOnly) RestoreDelivery(string, *broker.StoredDelivery) error         { return nil }
func (f *retainedOnly) RestoreInbound(string, uint16, uint64) error                  { return nil }
func (f *retainedOnly) RestoreRetained(m *broker.StoredMessage) error                { return f.r.RestoreRetained(m) }

// Forget drops what the journal keeps of session key, which this node
// no longer serves (taken over by another node); its journal stays. The
// node calls it when it is kicked, before it answers the kick.
func (j *Journal) Forget(key string) {
	j.mu.Lock()
	delete(j.mu.shadows, sessionSubject(key))
	j.mu.Unlock()
}

// Close flushes the journal's writes (within journalTimeout), closes its
// connection and the local store. Commit fails afterwards.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.mu.closed {
		j.mu.Unlock()
		return nil
	}
	j.mu.closed = true
	j.mu.Unlock()
	if j.err == nil {
		select {
		case <-j.js.PublishAsyncComplete():
		case <-time.After(journalTimeout):
		}
		close(j.stop)
		j.wg.Wait()
		j.nc.Close()
	}
	return j.local.Close()
}

// Commit implements broker.Store. Retained operations go to the local
// store (one batch, same durable flag); each session's operations go to
// its journal subject as one message, in the order of the Commit calls
// (one connection, published under Journal.mu). With durable it returns
// once JetStream acknowledged every message (a quorum stored it), or an
// error after journalTimeout at most. Without, it returns at once;
// failures are counted (AsyncFailed) and the session's next commit
// writes a snapshot. A batch with an invalid operation writes nothing;
// otherwise a commit is atomic per session (one message), not across
// sessions (a failure of JetStream midway leaves the sessions before it
// written) nor across the two stores.
func (j *Journal) Commit(b *broker.Batch, durable bool) error {
	var retained broker.Batch
	var keys []string
	byKey := make(map[string][]*broker.Op)
	for i := range b.Ops {
		op := &b.Ops[i]
		switch {
		case op.Kind == broker.OpPutRetained && op.Retained == nil:
			return errors.New("cluster: session journal: OpPutRetained without its message")
		case op.Kind == broker.OpPutRetained || op.Kind == broker.OpDeleteRetained:
			retained.Ops = append(retained.Ops, *op)
		case sessionOp(op.Kind):
			if !complete(op) {
				return fmt.Errorf("cluster: session journal: operation %d on %q without its record", op.Kind, op.ClientID)
			}
			if byKey[op.ClientID] == nil {
				keys = append(keys, op.ClientID)
			}
			byKey[op.ClientID] = append(byKey[op.ClientID], op)
		default:
			return fmt.Errorf("cluster: session journal: unknown operation %d", op.Kind)
		}
	}
	var futs []*ackWaiter
	if len(keys) > 0 {
		if j.err != nil {
			return j.err
		}
		j.count.commits.Add(1)
		// The fencing tokens, read before Journal.mu: the two locks are
		// never nested.
		fences := make([]uint64, len(keys))
		held := make([]bool, len(keys))
		for i, k := range keys {
			fences[i], held[i] = j.n.fence(k)
		}
		var err error
		futs, err = j.publish(keys, byKey, fences, held)
		if err != nil {
			if durable {
				j.count.commitFailed.Add(1)
			}
			return noQuorum(err)
		}
	}
	var lerr error
	if len(retained.Ops) > 0 {
		lerr = j.local.Commit(&retained, durable)
	}
	if durable && len(futs) > 0 {
		if err := j.awaitAcks(futs); err != nil {
			j.count.commitFailed.Add(1)
			return fmt.Errorf("cluster: session journal: not stored: %w", noQuorum(err))
		}
	}
	return lerr
}

// noQuorum marks err with broker.ErrStoreNoQuorum when JetStream did not
// acknowledge a write for want of a stream leader (an election) or in
// time, or too many writes still wait for theirs: the broker may write
// the batch again.
func noQuorum(err error) error {
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, errJournalBusy) {
		return fmt.Errorf("%w: %w", broker.ErrStoreNoQuorum, err)
	}
	return err
}

// complete reports whether a session operation carries the record its
// kind needs.
func complete(op *broker.Op) bool {
	switch op.Kind {
	case broker.OpPutSession:
		return op.Session != nil
	case broker.OpPutSubscription:
		return op.Sub != nil
	case broker.OpEnqueue, broker.OpSetInflight:
		return op.Delivery != nil
	}
	return true
}

// ackWaiter is the acknowledgement of one journal write, awaited by
// its commit (when durable) and by a compaction that follows it: a
// nats.go future hands its result over once, so the first waiter takes
// it and the others read it here.
type ackWaiter struct {
	f     jetstream.PubAckFuture
	taken atomic.Bool
	done  chan struct{} // closed once seq or err is set
	seq   uint64
	err   error
}

func newAckWaiter(f jetstream.PubAckFuture) *ackWaiter {
	return &ackWaiter{f: f, done: make(chan struct{})}
}

// wait returns the write's stream sequence, or why it failed, or gives
// up at timeout or stop.
func (a *ackWaiter) wait(timeout <-chan time.Time, stop <-chan struct{}) (uint64, error) {
	for {
		if a.taken.CompareAndSwap(false, true) {
			select {
			case ack := <-a.f.Ok():
				a.seq = ack.Sequence
			case err := <-a.f.Err():
				a.err = err
			case <-timeout:
				a.taken.Store(false)
				return 0, jetstream.ErrAsyncPublishTimeout
			case <-stop:
				a.taken.Store(false)
				return 0, ErrJournalClosed
			}
			close(a.done)
			return a.seq, a.err
		}
		select {
		case <-a.done:
			return a.seq, a.err
		case <-timeout:
			return 0, jetstream.ErrAsyncPublishTimeout
		case <-stop:
			return 0, ErrJournalClosed
		}
	}
}

// awaitAcks waits for JetStream's acknowledgement of every write, at
// most journalTimeout in all.
func (j *Journal) awaitAcks(acks []*ackWaiter) error {
	t := time.NewTimer(journalTimeout)
	defer t.Stop()
	for _, a := range acks {
		if _, err := a.wait(t.C, j.stop); err != nil {
			return err
		}
	}
	return nil
}

// publish writes one message per session key, in order, under
// Journal.mu, and queues the snapshots that became due.
func (j *Journal) publish(keys []string, byKey map[string][]*broker.Op, fences []uint64, held []bool) ([]*ackWaiter, error) {
	type write struct {
		subj  string
		epoch uint64
		body  []byte
		rec   *jrecord
	}
	writes := make([]write, len(keys))
	j.mu.Lock()
	if j.mu.closed {
		j.mu.Unlock()
		return nil, ErrJournalClosed
	}
	// Every record is encoded before any is published: a batch that
	// cannot be encoded writes nothing.
	for i, key := range keys {
		w := &writes[i]
		w.subj = sessionSubject(key)
		if held[i] {
			w.epoch = fences[i]
		} else if sh := j.mu.shadows[w.subj]; sh != nil {
			w.epoch = sh.epoch
		}
		var err error
		w.body, err = appendOps(nil, w.epoch, key, byKey[key])
		if err == nil && len(w.body) > maxPayload {
			err = fmt.Errorf("cluster: session journal: %d-byte record over the %d-byte limit", len(w.body), maxPayload)
		}
		if err == nil {
			// The shadow applies what the journal holds, decoded: exactly
			// what a fold applies, and nothing of the batch is kept.
			w.rec, err = decodeRecord(w.body)
		}
		if err != nil {
			j.mu.Unlock()
			return nil, err
		}
	}
	futs := make([]*ackWaiter, 0, len(keys))
	var due []compaction
	var err error
	for i, w := range writes {
		var f jetstream.PubAckFuture
		f, err = j.publishAsync(w.subj, w.body)
		if err != nil {
			j.writeFailed(w.subj, err)
			err = fmt.Errorf("cluster: session journal: %w", err)
			break
		}
		j.count.written.Add(1)
		sh := j.mu.shadows[w.subj]
		if sh == nil {
			sh = &shadow{key: keys[i], seen: j.failures.Load(), complete: byKey[keys[i]][0].Kind == broker.OpDeleteSession}
			j.mu.shadows[w.subj] = sh
		}
		sh.epoch = w.epoch
		a := newAckWaiter(f)
		futs = append(futs, a)
		sh.last = a
		sh.st.applyRecord(w.rec)
		sh.msgs++
		if c, ok := j.compactionLocked(w.subj, sh); ok {
			due = append(due, c)
		}
	}
	j.mu.Unlock()
	for _, c := range due {
		j.queueCompaction(c)
	}
	if err != nil {
		return nil, err
	}
	return futs, nil
}

// errJournalBusy is returned for a write while journalInFlightBytes wait
// for their acknowledgement.
var errJournalBusy = errors.New("cluster: session journal: too many bytes waiting for JetStream")

// publishAsync publishes one journal message on the ordered connection
// (the caller holds Journal.mu), within journalInFlightBytes; nats.go
// retries nothing (a retry would land out of order).
func (j *Journal) publishAsync(subject string, body []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	size := int64(len(body))
	if total := j.inFlight.Add(size); total > journalInFlightBytes && total != size {
		j.inFlight.Add(-size)
		return nil, errJournalBusy
	}
	opts = append(opts, jetstream.WithRetryAttempts(0), jetstream.WithStallWait(journalStall))
	f, err := j.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: body}, opts...)
	if err != nil {
		j.inFlight.Add(-size)
	}
	return f, err
}

// writeFailed counts a journal write JetStream did not take; every
// session's next commit then writes a snapshot (failures are rare: no
// quorum, a timeout). nats.go calls it with its publisher lock held: it
// takes no lock.
func (j *Journal) writeFailed(subject string, err error) {
	j.count.asyncFailed.Add(1)
	j.failures.Add(1)
	j.n.logDrop(&j.count.lastAsyncFailed, "cluster: session journal write not stored", "subject", subject, "err", err)
}
