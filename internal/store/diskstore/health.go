package diskstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// How the store watches its room (package documentation, "A full disk").
const (
	// openMargin is the room the engine needs to open for writing beyond
	// the reserve, the WAL it flushes and the WAL it preallocates: its
	// OPTIONS and MANIFEST files.
	openMargin = 1 << 20
	// spaceCheckBytes and spaceCheckEvery: the committer checks the free
	// space against the reserve before a group once this much was written
	// or this long passed since the last check, and before every group
	// while the last check found less than the reserve plus spaceNear.
	spaceCheckBytes = 1 << 20
	spaceCheckEvery = time.Second
	spaceNear       = 64 << 20
	// recoverPoll is how often an unavailable store checks for room, and
	// the first delay after a reopening that failed; the delay doubles up
	// to recoverMax.
	recoverPoll = time.Second
	recoverMax  = 30 * time.Second
)

// epoch is one life of the writable engine, from its opening to its
// failure. Commit builds its batch for the engine of the current epoch and
// waits on the epoch's failed channel; the committer commits the requests
// of the current epoch only, and only while it is healthy. A failure
// closes failed once; the recovery that reopens the engine installs a new
// epoch.
type epoch struct {
	db        *pebble.DB // the writable engine; nil for an epoch born failed (a read-only start)
	persisted uint64     // M/"cid" in db when the epoch began
	failed    chan struct{}
	once      sync.Once
	err       error // set before failed is closed
}

func newEpoch(db *pebble.DB, persisted uint64) *epoch {
	return &epoch{db: db, persisted: persisted, failed: make(chan struct{})}
}

// failure returns the epoch's failure, or nil while it is healthy.
func (e *epoch) failure() error {
	select {
	case <-e.failed:
		return e.err
	default:
		return nil
	}
}

// openAttempt is one opening of the engine for writing. While it is
// active, a memtable flush failing in pebble.Open parks (waits for room)
// instead of being retried at once.
type openAttempt struct {
	active atomic.Bool
	parked chan struct{} // closed when a flush first parks
	once   sync.Once
	fatal  atomic.Pointer[string] // a fatal engine error during the open
}

func newOpenAttempt() *openAttempt {
	a := &openAttempt{parked: make(chan struct{})}
	a.active.Store(true)
	return a
}

// Err returns why the store refuses writes (an error wrapping ErrDiskFull
// or ErrFailed), or nil while it accepts them.
func (s *Store) Err() error { return s.ep.Load().failure() }

// fail ends ep with err, once: Commit fails with err from then on, and a
// recovery starts. It only makes system calls and starts a goroutine, so
// the engine may call it with its locks held.
func (s *Store) fail(ep *epoch, err error) {
	ep.once.Do(func() {
		ep.err = err
		close(ep.failed)
		free, need, _ := s.room()
		s.log.Error("diskstore: store unavailable until the disk has room: persistent sessions and QoS 1/2 messages for them are refused",
			"data_dir", s.dir, "free", size(free), "needs", size(need), "err", err)
		s.startRecovery()
	})
}

// startRecovery starts a recovery goroutine unless the store is closed or
// read-only.
func (s *Store) startRecovery() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed || s.opts.ReadOnly {
		return
	}
	s.recoveries.Add(1)
	go s.recover()
}

// recover closes the failed engine, which ends its own retries, then
// checks every recoverPoll for room and reopens the engine for writing
// once there is, which makes the store available again. It returns then,
// or when the store is closed.
func (s *Store) recover() {
	defer s.recoveries.Done()
	s.eng.Lock()
	if ep := s.ep.Load(); s.eng.db != nil && s.eng.db == ep.db {
		_ = s.closeDB(s.eng.db, false) // the engine failed: its close error adds nothing
		s.eng.db = nil
	}
	s.releaseBallast() // closed, the engine writes nothing; the room helps it reopen
	s.eng.Unlock()
	delay := recoverPoll
	t := time.NewTimer(recoverPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if free, need, ok := s.room(); ok && free < need {
			t.Reset(recoverPoll)
			continue
		}
		ep, err := s.reopen()
		if errors.Is(err, errClosing) {
			return
		}
		if err != nil {
			s.log.Error("diskstore: reopening the store failed", "data_dir", s.dir, "retry_in", delay, "err", err)
			t.Reset(delay)
			delay = min(2*delay, recoverMax)
			continue
		}
		s.ep.Store(ep)
		s.makeBallast()
		free, _, _ := s.room()
		s.log.Info("diskstore: store available again", "data_dir", s.dir, "free", size(free))
		return
	}
}

// errClosing stops a reopening: the store is being closed.
var errClosing = errors.New("diskstore: closing")

// reopen closes the read-only engine, if one is open, and opens the
// engine for writing.
func (s *Store) reopen() (*epoch, error) {
	s.eng.Lock()
	defer s.eng.Unlock()
	select {
	case <-s.stop:
		return nil, errClosing
	default:
	}
	if s.eng.db != nil {
		_ = s.closeDB(s.eng.db, false) // read-only: nothing to lose
		s.eng.db = nil
	}
	return s.openWritableLocked(newOpenAttempt())
}

// room returns the free space of the data directory's file system and
// what the engine needs there to open for writing: the reserve, the WALs
// it replays and flushes into tables, the WAL it preallocates (110% of a
// memtable) and openMargin. ok is false when the free space is unknown.
func (s *Store) room() (free, need int64, ok bool) {
	du, err := s.fs.GetDiskUsage(s.dir)
	if err != nil {
		return 0, 0, false
	}
	need = max(s.opts.MinFreeSpace, 0) + int64(s.opts.MemTableSize)*11/10 + openMargin
	dir := filepath.Join(s.dir, "pebble")
	if names, err := s.fs.List(dir); err == nil {
		for _, n := range names {
			if strings.HasSuffix(n, ".log") {
				if fi, err := s.fs.Stat(filepath.Join(dir, n)); err == nil {
					need += fi.Size()
				}
			}
		}
	}
	return int64(du.AvailBytes), need, true
}

// fullError is the error of a store without room to open for writing.
func (s *Store) fullError(free, need int64) error {
	return fmt.Errorf("%w: data directory %s has %s free; opening the store for writing needs %s (reserve %s, WAL to replay, new WAL, margin)",
		ErrDiskFull, s.dir, size(free), size(need), size(s.opts.MinFreeSpace))
}

// spaceCheck is the committer's state for checkRoom.
type spaceCheck struct {
	at      time.Time
	written int
	near    bool // the last check found less than the reserve plus spaceNear
}

// checkRoom checks, before the committer writes n bytes, that the free
// space is still at least the reserve: after spaceCheckBytes written or
// spaceCheckEvery since the last check, and before every write near the
// reserve. Without a reserve it checks nothing (a failed write stops the
// store).
func (s *Store) checkRoom(n int) error {
	if s.opts.MinFreeSpace < 0 {
		return nil
	}
	c := &s.space
	c.written += n
	now := time.Now()
	if !c.near && c.written < spaceCheckBytes && now.Sub(c.at) < spaceCheckEvery {
		return nil
	}
	du, err := s.fs.GetDiskUsage(s.dir)
	if err != nil {
		return nil // unknown: a failed write stops the store
	}
	free := int64(du.AvailBytes)
	c.at, c.written, c.near = now, 0, free < s.opts.MinFreeSpace+spaceNear
	if free < s.opts.MinFreeSpace {
		return fmt.Errorf("%w: data directory %s has %s free, below the %s reserve", ErrDiskFull, s.dir, size(free), size(s.opts.MinFreeSpace))
	}
	return nil
}

// onBackgroundError handles an error the engine of ep reports from a
// flush or compaction, which it retries on its own (a flush at once and
// forever). During the engine's opening (a active) the flush waits for
// room (park). A write the system refused (an errno: no space, I/O error)
// fails the epoch, which closes the engine; another error is logged, the
// first of the epoch at error level.
func (s *Store) onBackgroundError(ep *epoch, a *openAttempt, err error) {
	if a != nil && a.active.Load() {
		s.park(a, err)
		return
	}
	var errno syscall.Errno
	if errors.As(err, &errno) || isNoSpace(err) {
		s.log.Debug("pebble: background error", "err", err.Error())
		s.fail(ep, engineError(err))
		return
	}
	if s.bgLogged.Swap(ep) != ep {
		s.log.Error("pebble: background error", "err", err.Error())
	} else {
		s.log.Debug("pebble: background error", "err", err.Error())
	}
}

// park holds a flush that failed while the engine opened until there is
// room again (checked every recoverPoll), instead of the engine's
// immediate retry; the first park of an attempt closes a.parked. Once the
// store is closed or Open has given up, it stays parked for good: the
// engine is abandoned, and costs no CPU.
func (s *Store) park(a *openAttempt, err error) {
	a.once.Do(func() {
		s.log.Error("diskstore: the disk filled while the engine opened; its flush waits for room", "data_dir", s.dir, "err", err.Error())
		close(a.parked)
	})
	t := time.NewTicker(recoverPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			select {} // abandoned (see above)
		case <-t.C:
		}
		if free, need, ok := s.room(); !ok || free >= need {
			return
		}
	}
}

// engineError wraps an engine failure in ErrDiskFull or ErrFailed.
func engineError(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return fmt.Errorf("%w: %w", ErrFailed, err)
}

// isNoSpace reports whether err is a full disk or quota, also when the
// engine only passed on its text (Logger.Fatalf).
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
}

// size formats a byte count for messages.
func size(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
