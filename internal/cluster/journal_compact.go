package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// compaction is one session whose subject is due for a snapshot.
type compaction struct {
	sh      *shadow
	subject string
}

// compactAttempts bounds the tries of one compaction: each waits for the
// acknowledgement of the session's last write, and fails when the
// session was written again meanwhile.
const compactAttempts = 8

// compactionLocked reports whether sh is due for a snapshot, and marks
// it compacting. A subject is compacted once it holds more than
// max(compactMin, 2 × live entries) messages since its last snapshot, at
// once when the session was deleted, and at the next commit after a
// failed write (the journal may differ from the shadow). A node whose
// claim was superseded (its epoch below the state's), or whose shadow
// is not the session's whole state, never compacts.
func (j *Journal) compactionLocked(subj string, sh *shadow) (compaction, bool) {
	if !sh.complete || sh.compacting || sh.epoch < sh.st.epoch {
		return compaction{}, false
	}
	deleted := sh.st.sess == nil
	if sh.msgs <= max(compactMin, 2*sh.st.entries()) && !(deleted && sh.msgs > 1) && sh.seen == j.failures.Load() {
		return compaction{}, false
	}
	sh.compacting = true
	return compaction{sh: sh, subject: subj}, true
}

// queueCompaction hands c to the compaction workers, unless too many
// wait (then it is tried again at the session's next commit).
func (j *Journal) queueCompaction(c compaction) {
	select {
	case j.compacts <- c:
	default:
		j.count.snapshotsSkipped.Add(1)
		j.compacted(c, 0, 0)
	}
}

// compacted records the end of c: done is the number of the shadow's
// messages the snapshot replaced, 0 when none was written, and seen the
// failure count the snapshot covers.
func (j *Journal) compacted(c compaction, done int, seen uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	sh := c.sh
	sh.compacting = false
	if done == 0 {
		return
	}
	sh.msgs -= done
	sh.seen = seen
	if sh.st.sess == nil && sh.msgs == 1 && j.mu.shadows[c.subject] == sh {
		// Deleted and compacted: nothing left to fence (a new session is
		// claimed again, with a higher token).
		delete(j.mu.shadows, c.subject)
	}
}

// compactLoop writes snapshots until the journal closes.
func (j *Journal) compactLoop() {
	defer j.wg.Done()
	for {
		select {
		case c := <-j.compacts:
			done, seen := j.compact(c)
			j.compacted(c, done, seen)
		case <-j.stop:
			return
		}
	}
}

// compact writes a snapshot of c's session, then purges the subject's
// messages before it; it returns the number of shadow messages replaced
// (0 when nothing was written) and the failure count it covers. The snapshot is the state as of the
// session's last write, which must be acknowledged and still the
// subject's last message: it is published, under Journal.mu (so no write
// of this node comes between), with that write's sequence as the
// expected last sequence of the subject, which JetStream checks; a
// write of another node in between (a new owner's marker) makes it
// refuse the snapshot.
func (j *Journal) compact(c compaction) (int, uint64) {
	t := time.NewTimer(journalTimeout)
	defer t.Stop()
	sh := c.sh
	for range compactAttempts {
		j.mu.Lock()
		// Forgotten (taken over: Forget runs before the new owner's claim
		// returns, hence before its adoption's marker) or replaced: not
		// this node's to compact any more.
		current := j.mu.shadows[c.subject] == sh && !j.mu.closed
		last := sh.last
		j.mu.Unlock()
		if !current || last == nil {
			return 0, 0
		}
		after, err := last.wait(t.C, j.stop)
		if err != nil {
			return 0, 0
		}
		j.mu.Lock()
		if j.mu.shadows[c.subject] != sh || j.mu.closed {
			j.mu.Unlock()
			return 0, 0
		}
		if sh.last != last {
			j.mu.Unlock()
			continue // written again meanwhile: wait for that write
		}
		deleted := sh.st.sess == nil
		body, err := appendSnapshot(nil, sh.key, &sh.st, sh.epoch)
		if err != nil || len(body) > snapshotMax {
			// Tried again after as many messages more.
			sh.msgs = 1
			j.mu.Unlock()
			j.count.snapshotsSkipped.Add(1)
			j.n.logDrop(&j.count.lastSnapshotSkipped, "cluster: session journal not compacted: snapshot too large", "bytes", len(body), "limit", snapshotMax, "err", err)
			return 0, 0
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(after)}
		if deleted {
			opts = append(opts, jetstream.WithMsgTTL(markerTTL))
		}
		f, err := j.publishAsync(c.subject, body, opts...)
		if err != nil {
			j.mu.Unlock()
			j.count.snapshotsSkipped.Add(1)
			return 0, 0
		}
		snap := newAckWaiter(f)
		replaced := sh.msgs
		sh.last = snap
		sh.msgs++
		seen := j.failures.Load()
		j.mu.Unlock()
		j.count.written.Add(1)
		seq, err := snap.wait(t.C, j.stop)
		if err != nil {
			// Mostly another node wrote first (a new owner's marker).
			j.count.snapshotsSkipped.Add(1)
			return 0, 0
		}
		j.count.snapshots.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), journalTimeout)
		err = j.purgeBefore(ctx, c.subject, seq)
		cancel()
		if err != nil {
			j.count.purgeFailed.Add(1)
			j.n.logDrop(&j.count.lastPurgeFailed, "cluster: session journal: purge after a snapshot failed", "subject", c.subject, "err", err)
		}
		return replaced, seen
	}
	j.count.snapshotsSkipped.Add(1)
	return 0, 0
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
