package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// Bounds of an adoption (LoadSession).
const (
	// loadTimeout bounds a LoadSession whatever its context.
	loadTimeout = 15 * time.Second
	// loadMaxBytes bounds the journal bytes read for one session, and
	// loadMaxEntries its live records (subscriptions, deliveries, inbound
	// ids): past either LoadSession fails rather than hold more.
	loadMaxBytes   = 64 << 20
	loadMaxEntries = 1 << 20
	// readBatch and journalBatchBytes bound one batched direct get: what a
	// reply may make the node buffer at once (plus one message).
	readBatch         = 512
	journalBatchBytes = 4 << 20
	// logGap is the largest gap between two deliveries' log sequences
	// fetched in one batch: the batch returns the messages in between too.
	logGap = 16
)

// errBatchDone stops reading a batch.
var errBatchDone = errors.New("cluster: batch done")

// LoadSession reports session key's state from the journal to r, in
// Store.Load's order for one session: r.RestoreSession, its
// subscriptions, its deliveries by Seq ascending (each with its message,
// fetched from the message log by sequence; an AwaitPubcomp delivery
// with an empty one), its inbound packet ids ascending. It reports false
// when the journal holds no session (never created, or deleted).
//
// Called by the node that holds the session's claim (after Claim), it
// first writes a marker at the claim's fencing token: every write of a
// node that lost the session that lands after the marker is ignored,
// and what it reports is the journal up to the marker; the journal then
// keeps a shadow of the session to compact its subject. It creates no
// JetStream consumer: batched direct gets (answered by any current
// replica, checked against the marker's sequence, else the leader's
// last sequence of the subject). A delivery whose log message is gone
// (aged out) or not on a valid topic is dropped, counted
// (DeliveriesDropped) and logged once per call.
func (j *Journal) LoadSession(ctx context.Context, key string, r broker.Restorer) (bool, error) {
	if j.err != nil {
		return false, j.err
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	subj := sessionSubject(key)
	epoch, held := j.n.fence(key)
	var upTo uint64
	var err error
	// Retried until ctx ends: right after a node's death the stream may
	// have no leader for a few seconds (an election), and JetStream
	// answers 503 while its meta leader moves.
	for {
		if held {
			upTo, err = j.mark(ctx, subj, key, epoch)
		} else {
			upTo, err = j.lastSeq(ctx, sessionsStream, subj)
		}
		if err == nil || errors.Is(err, ErrJournalClosed) || !sleepCtx(ctx, 250*time.Millisecond) {
			break
		}
	}
	if err != nil {
		return false, fmt.Errorf("cluster: adopting session %q: %w", key, err)
	}
	st := &jstate{}
	msgs := 0
	if upTo > 0 {
		if msgs, err = j.fold(ctx, subj, key, upTo, st); err != nil {
			return false, fmt.Errorf("cluster: adopting session %q: %w", key, err)
		}
	}
	found := st.sess != nil
	if found {
		if err := j.report(ctx, key, st, r); err != nil {
			return false, err
		}
		j.count.adopted.Add(1)
	}
	if held {
		j.mu.Lock()
		if !j.mu.closed {
			j.mu.shadows[subj] = &shadow{key: key, st: *st, epoch: epoch, msgs: msgs,
				seen: j.failures.Load(), complete: true}
		}
		j.mu.Unlock()
	}
	return found, nil
}

// mark writes session key's fencing marker (an operations record with no
// operation, at epoch) through the ordered path and returns its sequence.
// It expires after markerTTL.
func (j *Journal) mark(ctx context.Context, subj, key string, epoch uint64) (uint64, error) {
	body, err := appendOps(nil, epoch, key, nil)
	if err != nil {
		return 0, err
	}
	j.mu.Lock()
	if j.mu.closed {
		j.mu.Unlock()
		return 0, ErrJournalClosed
	}
	f, err := j.publishAsync(subj, body, jetstream.WithMsgTTL(markerTTL))
	j.mu.Unlock()
	if err != nil {
		return 0, err
	}
	j.count.written.Add(1)
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err := <-f.Err():
		return 0, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// fold reads subject's records up to sequence upTo into st and returns
// the number of messages since its last snapshot.
func (j *Journal) fold(ctx context.Context, subj, key string, upTo uint64, st *jstate) (int, error) {
	next, total, msgs := uint64(1), 0, 0
	apply := func(seq uint64, data []byte) error {
		if total += len(data); total > loadMaxBytes {
			return fmt.Errorf("journal over %d bytes", loadMaxBytes)
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return fmt.Errorf("journal record %d: %w", seq, err)
		}
		if rec.key != key {
			return fmt.Errorf("journal subject %s holds session %q: hash collision, refused", subj, rec.key)
		}
		switch {
		case !st.applyRecord(rec):
			j.count.fenced.Add(1)
			msgs++
		case rec.kind == recSnapshot:
			msgs = 1
		default:
			msgs++
		}
		if st.entries() > loadMaxEntries {
			return fmt.Errorf("journal over %d records", loadMaxEntries)
		}
		next = seq + 1
		return nil
	}
	for next <= upTo {
		before := next
		_, _, err := j.directBatch(ctx, sessionsStream, getReq{Seq: next, NextBySubj: subj, Batch: readBatch, MaxBytes: journalBatchBytes},
			func(seq uint64, _ string, _ time.Time, data []byte) error {
				if seq > upTo {
					return errBatchDone
				}
				return apply(seq, data)
			})
		if errors.Is(err, errBatchDone) {
			break
		}
		if err != nil {
			return 0, err
		}
		if next != before {
			continue
		}
		// The replica that answered has nothing from next on, yet upTo
		// exists: it lags. Ask the leader.
		m, found, err := j.leaderGet(ctx, sessionsStream, getReq{Seq: next, NextBySubj: subj})
		if err != nil {
			return 0, err
		}
		if !found || m.seq > upTo {
			break
		}
		if err := apply(m.seq, m.data); err != nil {
			return 0, err
		}
	}
	return msgs, nil
}

// report hands st to r in Store.Load's order.
func (j *Journal) report(ctx context.Context, key string, st *jstate, r broker.Restorer) error {
	rec := *st.sess
	if w := rec.Will; w != nil {
		cw := *w
		cw.Payload = slices.Clone(w.Payload)
		if w.Properties != nil {
			p := *w.Properties
			cw.Properties = &p
		}
		rec.Will = &cw
	}
	if err := r.RestoreSession(&rec); err != nil {
		return err
	}
	for _, f := range slices.Sorted(maps.Keys(st.subs)) {
		sub := st.subs[f]
		if err := r.RestoreSubscription(key, &sub); err != nil {
			return err
		}
	}
	seqs := slices.Sorted(maps.Keys(st.dels))
	lf := &logFetcher{j: j, ctx: ctx, have: make(map[uint64]*broker.StoredMessage),
		needs: func(seq uint64) bool { d := st.dels[seq]; return d != nil && d.state != broker.AwaitPubcomp }}
	dropped := 0
	for i, seq := range seqs {
		d := st.dels[seq]
		sd := broker.StoredDelivery{Seq: seq, QoS: d.qos, Retain: d.retain, SubIDs: slices.Clone(d.subIDs),
			PacketID: d.pid, State: d.state, Share: d.share, ShareFilter: d.shareFilter}
		if d.state != broker.AwaitPubcomp {
			m, err := lf.get(seqs[i:])
			if err != nil {
				return fmt.Errorf("cluster: adopting session %q: message log: %w", key, err)
			}
			if m == nil {
				dropped++
				continue
			}
			sd.Msg = *m
		}
		if err := r.RestoreDelivery(key, &sd); err != nil {
			return err
		}
	}
	if dropped > 0 {
		j.count.deliveriesDropped.Add(uint64(dropped))
		j.log.Warn("cluster: adopted session's deliveries dropped: their messages left the message log", "session", key, "dropped", dropped)
	}
	for _, pid := range slices.Sorted(maps.Keys(st.inbound)) {
		if err := r.RestoreInbound(key, pid, st.inbound[pid]); err != nil {
			return err
		}
	}
	return nil
}

// logFetcher fetches deliveries' messages from the message log, a batch
// of nearby sequences at a time.
type logFetcher struct {
	j     *Journal
	ctx   context.Context
	have  map[uint64]*broker.StoredMessage // fetched, not yet reported
	needs func(seq uint64) bool
	// covered: every log message up to it that exists was fetched.
	covered uint64
}

// get returns the message of seqs[0] (nil when gone or invalid); seqs
// are the deliveries still to report, ascending.
func (f *logFetcher) get(seqs []uint64) (*broker.StoredMessage, error) {
	seq := seqs[0]
	if seq > f.covered {
		if err := f.fetch(seqs); err != nil {
			return nil, err
		}
	}
	m := f.have[seq]
	delete(f.have, seq)
	return m, nil
}

// fetch reads the log from seqs[0] through the following sequences that
// need a message and are at most logGap apart, in one batched direct
// get (at most readBatch messages and journalBatchBytes).
func (f *logFetcher) fetch(seqs []uint64) error {
	start, end := seqs[0], seqs[0]
	for _, s := range seqs[1:] {
		if s-start >= readBatch {
			break
		}
		if !f.needs(s) {
			continue
		}
		if s-end > logGap {
			break
		}
		end = s
	}
	keep := func(seq uint64, subject string, ts time.Time, data []byte) {
		if seq >= start && f.needs(seq) {
			f.have[seq] = decodeJournalLogMessage(subject, ts, data)
		}
	}
	n, last, err := f.j.directBatch(f.ctx, logStream, getReq{Seq: start, Batch: int(end - start + 1), MaxBytes: journalBatchBytes},
		func(seq uint64, subject string, ts time.Time, data []byte) error {
			keep(seq, subject, ts, data)
			return nil
		})
	if err != nil {
		return err
	}
	if n > 0 {
		// A batch steps over deleted messages: what it skipped up to last
		// is gone.
		f.covered = last
		return nil
	}
	// Nothing from start on at the replica that answered: it may lag.
	// The leader tells.
	m, found, err := f.j.leaderGet(f.ctx, logStream, getReq{Seq: start})
	if err != nil {
		return err
	}
	if found {
		keep(m.seq, m.subject, m.time, m.data)
	}
	f.covered = start
	return nil
}

// decodeJournalLogMessage decodes a message of the log for a delivery
// (decodeLogMessage); nil when its subject is not a valid topic's or its
// envelope does not decode.
func decodeJournalLogMessage(subject string, ts time.Time, data []byte) *broker.StoredMessage {
	if ts.IsZero() {
		ts = time.Now()
	}
	m, err := decodeLogMessage(subject, data, ts)
	if err != nil || topic.ValidateName(m.Topic) != nil {
		return nil
	}
	return &broker.StoredMessage{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, Expiry: m.Expiry, Origin: m.Origin}
}

// getReq is a JetStream message get request (direct or from the leader).
type getReq struct {
	Seq        uint64 `json:"seq,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
	LastBySubj string `json:"last_by_subj,omitempty"`
	Batch      int    `json:"batch,omitempty"`
	MaxBytes   int    `json:"max_bytes,omitempty"`
}

// directBatch sends a direct get request for stream (answered by any
// current replica, no consumer) and hands each message of the answer to
// fn, until the end of the batch, "not found", or fn's error. It returns
// the number of messages and the last one's sequence.
func (j *Journal) directBatch(ctx context.Context, stream string, req getReq,
	fn func(seq uint64, subject string, ts time.Time, data []byte) error) (int, uint64, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, 0, err
	}
	inbox := nats.NewInbox()
	sub, err := j.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }() // the connection may be closing; nothing to do then
	if err := j.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return 0, 0, err
	}
	n, last := 0, uint64(0)
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return n, last, err
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204", "404": // end of batch; nothing (more) found
				return n, last, nil
			case "503":
				return n, last, fmt.Errorf("stream %s not available: %w", stream, nats.ErrNoResponders)
			default:
				return n, last, fmt.Errorf("stream %s: direct get: %s %s", stream, status, m.Header.Get("Description"))
			}
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return n, last, fmt.Errorf("stream %s: direct get: bad sequence header", stream)
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		n++
		last = seq
		if err := fn(seq, m.Header.Get(jetstream.SubjectHeader), ts, m.Data); err != nil {
			return n, last, err
		}
	}
}

// storedMsg is a message read from a stream's leader.
type storedMsg struct {
	subject string
	seq     uint64
	data    []byte
	time    time.Time
}

// leaderGet asks stream's leader for one message (no batch); found is
// false when there is none.
func (j *Journal) leaderGet(ctx context.Context, stream string, req getReq) (storedMsg, bool, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return storedMsg{}, false, err
	}
	m, err := j.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return storedMsg{}, false, fmt.Errorf("stream %s: %w", stream, err)
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return storedMsg{}, false, fmt.Errorf("stream %s: %w", stream, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == jsNoMessageFound {
			return storedMsg{}, false, nil
		}
		return storedMsg{}, false, resp.Error
	}
	if resp.Message == nil {
		return storedMsg{}, false, fmt.Errorf("stream %s: empty answer", stream)
	}
	mm := resp.Message
	return storedMsg{subject: mm.Subject, seq: mm.Seq, data: mm.Data, time: mm.Time}, true, nil
}

// jsNoMessageFound is JetStream's error code for "no message found".
const jsNoMessageFound = 10037

// lastSeq returns the sequence of subject's last message in stream, 0
// when it has none, as the leader knows it.
func (j *Journal) lastSeq(ctx context.Context, stream, subject string) (uint64, error) {
	m, found, err := j.leaderGet(ctx, stream, getReq{LastBySubj: subject})
	if err != nil || !found {
		return 0, err
	}
	return m.seq, nil
}
