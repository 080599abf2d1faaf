package diskstore

import (
	"time"

	"github.com/petrel-mqtt/petrel/broker"
)

// Riding commits. Some writes must be durable before their caller goes
// on, but nobody waits on them in turn: the broker's records of outbound
// QoS 2 deliveries whose PUBREC came (the PUBREL waits for its record; no
// publisher waits for the PUBREL). Synced on their own, they cost a
// second fsync per round of messages, and a publisher's write that comes
// while that fsync runs waits for it before its own: with one publisher
// and one persistent QoS 2 subscriber, about half the rate. A riding
// write is written at once without a sync and completed by the next
// synced commit, which the publishers' writes start anyway while
// messages flow (the WAL is synced in order: a sync covers every write
// before it). If none comes within rideWait the committer syncs the WAL
// itself; with no synced commit asked for in the last rideRecent (a
// subscriber draining its backlog, nobody publishing) a riding write is
// synced at once, like a durable one.

const (
	// defaultRideWait bounds how long a riding write waits for a synced
	// commit before the committer syncs for it: about one fsync, the
	// gap between two commits of a busy publisher.
	defaultRideWait = 2 * time.Millisecond
	// defaultRideRecent is how recent a synced commit must be for riding
	// writes to wait for the next.
	defaultRideRecent = 50 * time.Millisecond
)

// CommitRiding implements broker.RidingStore: it writes b like a durable
// Commit and returns once b is durable, without a sync of its own while
// other writes are synced (see above). In the sync modes "interval" and
// "none" it is Commit(b, true).
func (s *Store) CommitRiding(b *broker.Batch) error {
	if s.mode != modeAlways {
		return s.Commit(b, true)
	}
	return s.commit(b, true, true)
}

func (s *Store) rideWait() time.Duration {
	if s.opts.rideWait > 0 {
		return s.opts.rideWait
	}
	return defaultRideWait
}

func (s *Store) rideRecent() time.Duration {
	if s.opts.rideRecent > 0 {
		return s.opts.rideRecent
	}
	return defaultRideRecent
}

// riders is the committer's state of riding writes: those written
// without a sync, waiting for one. Only the committer uses it.
type riders struct {
	waiting  []*request
	timer    *time.Timer // armed while some wait
	lastSync time.Time   // the last synced commit a non-riding write asked for
}

// holding reports whether riding writes committed at now wait for a
// later sync: one was asked for within recent.
func (rd *riders) holding(now time.Time, recent time.Duration) bool {
	return !rd.lastSync.IsZero() && now.Sub(rd.lastSync) < recent
}

// synced records a synced commit a non-riding write asked for.
func (rd *riders) synced(now time.Time) { rd.lastSync = now }

// add holds r, written without a sync, until the next sync or wait.
func (rd *riders) add(r *request, wait time.Duration) {
	if len(rd.waiting) == 0 {
		if rd.timer == nil {
			rd.timer = time.NewTimer(wait)
		} else {
			rd.timer.Reset(wait)
		}
	}
	rd.waiting = append(rd.waiting, r)
}

// due is the timer's channel while writes wait, else nil.
func (rd *riders) due() <-chan time.Time {
	if len(rd.waiting) == 0 {
		return nil
	}
	return rd.timer.C
}

// complete answers every waiting write: err from the sync that covered
// them, or their epoch's failure (an epoch is replaced only once it
// failed: its writes are not known to be on disk).
func (rd *riders) complete(err error) {
	if len(rd.waiting) == 0 {
		return
	}
	for _, r := range rd.waiting {
		e := err
		if e == nil {
			e = r.ep.failure()
		}
		r.done <- e
	}
	clear(rd.waiting)
	rd.waiting = rd.waiting[:0]
	rd.timer.Stop()
}

// stop releases the timer when the committer returns.
func (rd *riders) stop() {
	if rd.timer != nil {
		rd.timer.Stop()
	}
}
