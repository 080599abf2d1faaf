package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// compaction is one snapshot waiting for its write: the state of a
// session as of the message after, which must still be the last on the
// subject when the snapshot is written (else another write came first
// and the snapshot is dropped).
type compaction struct {
	sh      *shadow
	subject string
	after   jetstream.PubAckFuture
	body    []byte
	deleted bool // the session does not exist: the snapshot expires (markerTTL)
	msgs    int  // the shadow's message count the snapshot replaces
	seen    uint64
}

// compactionLocked returns the compaction due for sh after its message
// f, if any, and marks sh compacting. A subject is compacted once it
// holds more than max(compactMin, 2 × live entries) messages since its
// last snapshot, at once when the session was deleted, and at the next
// commit after a failed write (the journal may differ from the shadow).
// A node whose claim was superseded (its epoch below the state's) never
// compacts.
func (j *Journal) compactionLocked(subj string, sh *shadow, f jetstream.PubAckFuture) (compaction, bool) {
	if !sh.complete || sh.compacting || sh.epoch < sh.st.epoch {
		return compaction{}, false
	}
	seen := j.failures.Load()
	deleted := sh.st.sess == nil
	due := sh.msgs > max(compactMin, 2*sh.st.entries()) || (deleted && sh.msgs > 0) || sh.seen != seen
	if !due {
		return compaction{}, false
	}
	body, err := appendSnapshot(nil, sh.key, &sh.st, sh.epoch)
	if err != nil || len(body) > snapshotMax {
		// Tried again after as many messages more.
		sh.msgs = 0
		j.count.snapshotsSkipped.Add(1)
		j.n.logDrop(&j.count.lastSnapshotSkipped, "cluster: session journal not compacted: snapshot too large", "bytes", len(body), "limit", snapshotMax, "err", err)
		return compaction{}, false
	}
	sh.compacting = true
	return compaction{sh: sh, subject: subj, after: f, body: body, deleted: deleted, msgs: sh.msgs, seen: seen}, true
}

// queueCompaction hands c to the compaction workers, unless too many
// wait (then it is tried again at the session's next commit).
func (j *Journal) queueCompaction(c compaction) {
	size := int64(len(c.body))
	if total := j.compactBytes.Add(size); total <= compactBytes || total == size {
		select {
		case j.compacts <- c:
			return
		default:
		}
	}
	j.compactBytes.Add(-size)
	j.count.snapshotsSkipped.Add(1)
	j.compacted(c, false)
}

// compacted records the end of c.
func (j *Journal) compacted(c compaction, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	sh := c.sh
	sh.compacting = false
	if !ok {
		return
	}
	sh.msgs -= c.msgs - 1
	sh.seen = c.seen
	if sh.st.sess == nil && sh.msgs == 1 && j.mu.shadows[c.subject] == sh {
		// Deleted and compacted: nothing left to fence (a new session is
		// claimed again, with a higher token).
		delete(j.mu.shadows, c.subject)
	}
}

// compactLoop writes queued snapshots until the journal closes.
func (j *Journal) compactLoop() {
	defer j.wg.Done()
	for {
		select {
		case c := <-j.compacts:
			j.compactBytes.Add(-int64(len(c.body)))
			j.compacted(c, j.compact(c))
		case <-j.stop:
			return
		}
	}
}

// compact writes c's snapshot, if the message it follows is still the
// last of its subject (an expected-last-subject-sequence publish: a
// newer write, this node's or a newer owner's, makes JetStream refuse
// it), then purges the subject's messages before the snapshot.
func (j *Journal) compact(c compaction) bool {
	var after uint64
	t := time.NewTimer(journalTimeout)
	defer t.Stop()
	select {
	case ack := <-c.after.Ok():
		after = ack.Sequence
	case <-c.after.Err():
		return false
	case <-t.C:
		return false
	case <-j.stop:
		return false
	}
	// Forgotten (taken over: Forget runs before the new owner's claim
	// returns, hence before its adoption's marker) or replaced: not this
	// node's to compact any more. A newer owner's marker written after
	// this check makes the snapshot's expected sequence fail.
	j.mu.Lock()
	current := j.mu.shadows[c.subject] == c.sh
	j.mu.Unlock()
	if !current {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), journalTimeout)
	defer cancel()
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(after), jetstream.WithRetryAttempts(0)}
	if c.deleted {
		opts = append(opts, jetstream.WithMsgTTL(markerTTL))
	}
	ack, err := j.js.PublishMsg(ctx, &nats.Msg{Subject: c.subject, Data: c.body}, opts...)
	if err != nil {
		// Mostly another write came first: compacted at a later commit.
		j.count.snapshotsSkipped.Add(1)
		return false
	}
	j.count.written.Add(1)
	j.count.snapshots.Add(1)
	if err := j.purgeBefore(ctx, c.subject, ack.Sequence); err != nil {
		j.count.purgeFailed.Add(1)
		j.n.logDrop(&j.count.lastPurgeFailed, "cluster: session journal: purge after a snapshot failed", "subject", c.subject, "err", err)
	}
	return true
}

// purgeBefore purges the messages of subject below sequence seq.
func (j *Journal) purgeBefore(ctx context.Context, subject string, seq uint64) error {
	req, err := json.Marshal(struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq"`
	}{subject, seq})
	if err != nil {
		return err
	}
	m, err := j.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+sessionsStream, req)
	if err != nil {
		return err
	}
	var resp struct {
		Success bool      `json:"success"`
		Error   *apiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	if !resp.Success {
		return errors.New("cluster: purge not done")
	}
	return nil
}

// apiError is a JetStream API error response.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("cluster: JetStream: %s (%d, %d)", e.Description, e.Code, e.ErrCode)
}
