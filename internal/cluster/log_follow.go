package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// JetStream's error codes for a stream whose MaxBytes the servers'
// storage cannot reserve: "insufficient storage resources available"
// (standalone) and "insufficient resources" (no peer to place it on).
const (
	storageExceededCode      = 10047
	insufficientResourceCode = 10023
)

// isStorageExceeded reports JetStream's refusal to reserve a stream's
// MaxBytes.
func isStorageExceeded(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == storageExceededCode || apiErr.ErrorCode == insufficientResourceCode)
}

// logStreamConfig is the message log's stream at r replicas: limits
// retention (MaxAge, MaxBytes, the oldest discarded first), replicated
// file storage, direct gets for ReadLog.
func (n *Node) logStreamConfig(r int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        logStream,
		Subjects:    []string{logRoot + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      n.cfg.messageRetention(),
		MaxBytes:    n.cfg.messageBytes(),
		MaxMsgSize:  maxPayload,
		Discard:     jetstream.DiscardOld,
		Replicas:    r,
		Storage:     jetstream.FileStorage,
		AllowDirect: true,
	}
}

// followLog runs the node's one ordered consumer on the message log,
// once the broker is bound (and is a LogHost): it starts after the
// log's last sequence at that time and hands every later message to
// the broker, in sequence order, from this goroutine only.
func (n *Node) followLog() {
	defer n.wg.Done()
	select {
	case <-n.bound:
	case <-n.ctx.Done():
		return
	}
	h := n.logHost()
	if h == nil {
		n.log.Warn("cluster: the broker does not take messages from the message log (no LogHost): not following it")
		n.markFollowing() // nothing to wait for
		return
	}
	f := logFollower{n: n, h: h}
	backoff := 250 * time.Millisecond
	for {
		err := f.run()
		if n.ctx.Err() != nil {
			return
		}
		n.log.Warn("cluster: cannot follow the message log; retrying", "err", err)
		if !sleepCtx(n.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// logFollower is followLog's state: the next sequence the broker expects.
type logFollower struct {
	n       *Node
	h       LogHost
	started bool   // LogFrom was called
	next    uint64 // the sequence the broker expects next
}

// from tells the broker that its next message follows seq.
func (f *logFollower) from(seq uint64) {
	if f.started {
		f.n.count.followerResets.Add(1)
	}
	f.started = true
	f.next = seq + 1
	f.h.LogFrom(seq)
}

// run follows the log from f.next (or, the first time, after its last
// sequence) until the node stops or the consumer fails.
func (f *logFollower) run() error {
	n := f.n
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	s, err := n.logJS.Stream(ctx, logStream)
	cancel()
	if err != nil {
		return err
	}
	last := s.CachedInfo().State.LastSeq
	switch {
	case !f.started:
		f.from(last)
	case last+1 < f.next:
		// The log is behind what was handed over: it was recreated.
		f.from(last)
	}
	cons, err := n.logJS.OrderedConsumer(n.ctx, logStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{logRoot + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    f.next,
	})
	if err != nil {
		return err
	}
	// Bounded in bytes, not in messages (each up to 64 MiB).
	it, err := cons.Messages(jetstream.PullMaxBytes(followBytes))
	if err != nil {
		return err
	}
	n.markFollowing()
	stop := context.AfterFunc(n.ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		f.deliver(m)
	}
}

// deliver hands one message of the log to the broker: a copy from
// before a restart of the consumer is skipped; a message after a gap
// (messages the log discarded before they were read) first restarts the
// broker's count; one that does not decode is handed over as its
// position only.
func (f *logFollower) deliver(m jetstream.Msg) {
	n := f.n
	md, err := m.Metadata()
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: message log delivery without metadata ignored", "err", err)
		return
	}
	seq := md.Sequence.Stream
	if seq < f.next {
		return
	}
	if seq > f.next {
		f.from(seq - 1)
	}
	f.next = seq + 1
	var msg *session.Message
	here := false
	e, err := decodeLogEnvelope(m.Subject(), m.Data(), md.Timestamp)
	if err == nil {
		msg = e.msg
		here = e.node == n.cfg.Node && e.incarnation == n.incarnation
	}
	if err != nil {
		n.count.malformed.Add(1)
		n.logDrop(&n.count.lastMalformed, "cluster: malformed message in the message log", "seq", seq, "subject", shorten(m.Subject()), "err", err)
		msg = nil
	}
	n.count.followed.Add(1)
	f.h.DeliverLogged(msg, seq, here)
}
