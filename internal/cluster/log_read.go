package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// Bounds of ReadLog.
const (
	// readBatchMsgs and readBatchBytes bound one ReadLog's batch: what it
	// holds at a time, shared among the subjects it merges (JetStream
	// sends a batch's last message whole, so up to one message more).
	readBatchMsgs  = 256
	readBatchBytes = 4 << 20
	// readWait bounds the wait for one batch or one leader read.
	readWait = 5 * time.Second
	// maxMergeSubjects is the most subjects ReadLog reads apart and merges
	// by sequence; with more filters it reads the whole log after
	// `after` once and matches each message's topic itself.
	maxMergeSubjects = 8
)

// decodeLogMessage decodes a message of the log: its subject (logSubject),
// its body (the envelope) and the time the log stored it, from which its
// 5.0 expiry counts [MQTT-3.3.2-5]. The message owns copies of what it
// holds (data is not kept).
func decodeLogMessage(subject string, data []byte, stored time.Time) (*session.Message, error) {
	e, err := decodeLogEnvelope(subject, data, stored)
	if err != nil {
		return nil, err
	}
	return e.msg, nil
}

// decodeLogEnvelope is decodeLogMessage with the envelope's writer (node
// and life).
func decodeLogEnvelope(subject string, data []byte, stored time.Time) (envelope, error) {
	t, err := logTopic(subject)
	if err != nil {
		return envelope{}, err
	}
	return decodeEnvelope(t, data, stored)
}

// logTopic returns the topic of a log message's subject (logSubject's
// inverse).
func logTopic(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, logRoot+".")
	if !ok {
		return "", ErrBadSubject
	}
	return SubjectTopic(rest)
}

// logFilterSubjects returns the log subjects that select filters'
// messages, each once, or nil when there are more than maxMergeSubjects.
func logFilterSubjects(filters []string) ([]string, error) {
	var out []string
	for _, f := range filters {
		subs, err := FilterSubjects(f)
		if err != nil {
			return nil, fmt.Errorf("cluster: filter %q: %w", shorten(f), err)
		}
		for _, s := range subs {
			s = logRoot + "." + s
			if !containsString(out, s) {
				out = append(out, s)
			}
		}
	}
	if len(out) > maxMergeSubjects {
		return nil, nil
	}
	return out, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ReadLog calls fn, in sequence order, once for each message of the log
// with a sequence above after whose topic matches one of filters (MQTT
// filters without a $share prefix), up to the log's last sequence when
// ReadLog started, which it returns. An expired message is skipped
// [MQTT-3.3.2-5]; so is one that does not decode (counted in
// Counters.Malformed). fn's error stops the read and is returned. A
// filter that is not valid is an error.
//
// No JetStream consumer is created: it reads batches of direct gets
// (next_by_subj), one sequence of batches per filter subject merged by
// sequence, or, with more than 8 subjects, one over the whole log with
// the topics matched here. It holds one batch (readBatchMsgs,
// readBatchBytes) at a time. A direct get may be answered by a replica
// that lags the leader: where a replica finds nothing more up to the
// last sequence, the leader is asked.
func (n *Node) ReadLog(ctx context.Context, after uint64, filters []string, fn func(seq uint64, msg *session.Message) error) (last uint64, err error) {
	select {
	case <-n.assets:
	default:
		return 0, ErrNotReady
	}
	if n.ctx.Err() != nil {
		return 0, ErrClosed
	}
	subjects, err := logFilterSubjects(filters)
	if err != nil {
		return 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, readWait)
	s, err := n.logJS.Stream(lctx, logStream)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("cluster: message log: %w", err)
	}
	last = s.CachedInfo().State.LastSeq
	if after >= last || len(filters) == 0 {
		return last, nil
	}
	r := logReader{n: n, ctx: ctx, last: last}
	onePass := subjects == nil
	if onePass {
		subjects = []string{logRoot + ".>"}
	}
	r.cursors = make([]*logCursor, len(subjects))
	for i, s := range subjects {
		r.cursors[i] = &logCursor{subject: s, next: after + 1}
	}
	r.batchMsgs = max(readBatchMsgs/len(subjects), 16)
	r.batchBytes = readBatchBytes / len(subjects)
	r.sub, err = n.logc.SubscribeSync(nats.NewInbox())
	if err != nil {
		return 0, err
	}
	defer r.sub.Unsubscribe()
	if err := r.sub.SetPendingLimits(r.batchMsgs+8, followBytes); err != nil {
		return 0, err
	}
	prev := after
	for {
		c, err := r.head()
		if err != nil {
			return last, err
		}
		if c == nil {
			return last, nil
		}
		e := c.batch[0]
		c.batch[0] = logged{}
		c.batch = c.batch[1:]
		if e.seq <= prev {
			continue // matched another subject too
		}
		prev = e.seq
		if onePass {
			t, err := logTopic(e.subject)
			if err == nil && !topic.MatchAny(filters, t) {
				continue
			}
		}
		msg, err := decodeLogMessage(e.subject, e.data, e.stored)
		if err != nil {
			n.count.malformed.Add(1)
			n.logDrop(&n.count.lastMalformed, "cluster: malformed message in the message log skipped", "seq", e.seq, "subject", shorten(e.subject), "err", err)
			continue
		}
		if msg.Expired(time.Now()) {
			continue
		}
		if err := fn(e.seq, msg); err != nil {
			return last, err
		}
	}
}

// logged is one message read from the log.
type logged struct {
	seq     uint64
	subject string
	data    []byte
	stored  time.Time
}

// logCursor reads the log's messages on one subject filter in order.
type logCursor struct {
	subject string
	next    uint64   // the next sequence to ask for
	batch   []logged // read, not yet merged
	done    bool     // nothing more up to the reader's last
}

// logReader is one ReadLog: its cursors and the inbox their batches come
// to, one request at a time.
type logReader struct {
	n                     *Node
	ctx                   context.Context
	last                  uint64
	cursors               []*logCursor
	sub                   *nats.Subscription
	batchMsgs, batchBytes int
}

// head returns the cursor whose next message has the lowest sequence,
// reading a batch for each cursor that has none; nil when every cursor
// is done.
func (r *logReader) head() (*logCursor, error) {
	var best *logCursor
	for _, c := range r.cursors {
		for len(c.batch) == 0 && !c.done {
			if err := r.fill(c); err != nil {
				return nil, err
			}
		}
		if len(c.batch) > 0 && (best == nil || c.batch[0].seq < best.batch[0].seq) {
			best = c
		}
	}
	return best, nil
}

// fill reads c's next batch with a direct get. When the replica that
// answers has nothing more up to r.last, the leader says whether that
// is so (it is, unless the replica lags).
func (r *logReader) fill(c *logCursor) error {
	if c.next > r.last {
		c.done = true
		return nil
	}
	req, err := json.Marshal(directGetRequest{Seq: c.next, NextBySubj: c.subject, Batch: r.batchMsgs, MaxBytes: r.batchBytes})
	if err != nil {
		return err
	}
	if err := r.n.logc.PublishRequest("$JS.API.DIRECT.GET."+logStream, r.sub.Subject, req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, readWait)
	defer cancel()
	past := false // a message after r.last came
	for {
		m, err := r.sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("cluster: message log: reading a batch: %w", err)
		}
		status := m.Header.Get("Status")
		if status == "" {
			e, err := directGot(m)
			if err != nil {
				return err
			}
			if e.seq > r.last {
				past = true
				continue // the rest of the batch is read and dropped
			}
			c.batch = append(c.batch, e)
			continue
		}
		switch status {
		case "204", "404", "503":
			// The end of the batch; nothing found; no replica serves
			// direct gets yet (the leader is asked below).
		default:
			return fmt.Errorf("cluster: message log: direct get: %s %s", status, m.Header.Get("Description"))
		}
		break
	}
	if len(c.batch) > 0 {
		c.next = c.batch[len(c.batch)-1].seq + 1
	}
	if past || c.next > r.last {
		c.done = true
		return nil
	}
	if len(c.batch) > 0 {
		return nil
	}
	e, found, err := r.leaderNext(c)
	switch {
	case err != nil:
		return err
	case !found || e.seq > r.last:
		c.done = true
	default:
		c.batch = append(c.batch, e)
		c.next = e.seq + 1
	}
	return nil
}

// directGetRequest is JetStream's direct get request (a batch).
type directGetRequest struct {
	Seq        uint64 `json:"seq,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
	Batch      int    `json:"batch,omitempty"`
	MaxBytes   int    `json:"max_bytes,omitempty"`
}

// directGot decodes one message of a direct get's batch.
func directGot(m *nats.Msg) (logged, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return logged{}, fmt.Errorf("cluster: message log: direct get without a sequence: %w", err)
	}
	stored, err := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	if err != nil {
		return logged{}, fmt.Errorf("cluster: message log: direct get without a time stamp: %w", err)
	}
	return logged{seq: seq, subject: m.Header.Get("Nats-Subject"), data: m.Data, stored: stored}, nil
}

// leaderNext asks the log's leader for the first message on c's subject
// from c.next (found false: none).
func (r *logReader) leaderNext(c *logCursor) (logged, bool, error) {
	req, err := json.Marshal(directGetRequest{Seq: c.next, NextBySubj: c.subject})
	if err != nil {
		return logged{}, false, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, readWait)
	defer cancel()
	m, err := r.n.logc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+logStream, req)
	if err != nil {
		return logged{}, false, fmt.Errorf("cluster: message log: leader read: %w", err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return logged{}, false, fmt.Errorf("cluster: message log: leader read: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return logged{}, false, nil
	case resp.Error != nil:
		return logged{}, false, fmt.Errorf("cluster: message log: leader read: %d %s", resp.Error.Code, resp.Error.Description)
	case resp.Message == nil:
		return logged{}, false, errors.New("cluster: message log: leader read: empty answer")
	}
	return logged{seq: resp.Message.Sequence, subject: resp.Message.Subject, data: resp.Message.Data, stored: resp.Message.Time}, true, nil
}
