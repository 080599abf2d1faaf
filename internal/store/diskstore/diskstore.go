// Package diskstore is the broker's embedded on-disk Store, on Pebble (an
// LSM key-value engine, github.com/cockroachdb/pebble/v2). It keeps
// sessions, subscriptions, queued and inflight QoS 1/2 deliveries, inbound
// QoS 2 packet ids and retained messages under one data directory:
//
//	DIR/LOCK     flock held while open; holds the owner's pid
//	DIR/pebble/  the Pebble database (key schema in keys.go)
//
// # Group commit
//
// Commit encodes the batch on the caller's goroutine into a pebble.Batch
// and hands it over a bounded channel to one committer goroutine, which
// owns the write path: it takes what is waiting (up to maxGroupReqs
// requests or maxGroupBytes), concatenates it into one batch, commits that
// with one WAL write and at most one fsync, and then completes every
// waiter. Acks and deletes committed without durable ride along with the
// next synced group.
//
// # Sync modes and what each can lose
//
//   - "always" (the default): a durable Commit returns after the WAL fsync
//     of its group. Nothing it acknowledged is lost on a process crash
//     (kill -9) or, on a disk that honours flushes, on power loss.
//     Non-durable commits (acks, deletions) are written without fsync and
//     are lost on a crash until a later durable commit syncs the WAL after
//     them; the broker then redelivers (QoS 1 with DUP).
//   - "interval": every Commit returns after the write without fsync; the
//     committer syncs the WAL every SyncInterval (default 100 ms) when
//     something was written. Pebble keeps unsynced WAL records in a
//     buffer inside the process, so a kill -9 or a power loss loses up to
//     the last SyncInterval of acknowledged commits.
//   - "none": never fsync (Close still does). A kill -9 or a power loss
//     can lose every commit since the last memtable flush or Close; use it
//     only for benchmarks or when a broker restart may lose messages.
//
// A write error (disk full, I/O error) is returned by Commit and nothing
// of the batch is acknowledged. Pebble treats a failed WAL write as fatal:
// the store then fails every later Commit with the same error and must be
// reopened (the broker restarts).
//
// # Records
//
// Every value starts with a format version byte (formatV1). Load fails
// on a corrupt, truncated or unknown-format record with an error naming
// the key (Q/cid=3/seq=42), unless Options.SkipCorrupt, which skips and
// counts such records (Corrupt) and logs each one.
package diskstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/petrel-mqtt/petrel/broker"
)

// Sync modes of Options.Sync.
const (
	SyncAlways   = "always"
	SyncInterval = "interval"
	SyncNone     = "none"
)

// DefaultSyncInterval is the fsync period of the "interval" mode.
const DefaultSyncInterval = 100 * time.Millisecond

// Errors of the store.
var (
	// ErrClosed is returned by Commit after Close.
	ErrClosed = errors.New("diskstore: store closed")
	// ErrLocked means another process holds the data directory.
	ErrLocked = errors.New("diskstore: data directory locked")
	// ErrReadOnly is returned by Commit on a store opened read-only.
	ErrReadOnly = errors.New("diskstore: store opened read-only")
	// ErrFailed wraps a fatal engine error; the store must be reopened.
	ErrFailed = errors.New("diskstore: store failed")
	// ErrNoStore means a read-only Open found no store in the directory.
	ErrNoStore = errors.New("diskstore: no store")
)

// Options configures Open. The zero value is the default configuration.
type Options struct {
	// Sync is the sync mode: "always" (default when empty), "interval"
	// or "none". See the package documentation.
	Sync string
	// SyncInterval is the fsync period of "interval" (default 100 ms).
	SyncInterval time.Duration
	// Logger receives the engine's messages and skipped corrupt records
	// (default: slog.Default()).
	Logger *slog.Logger
	// SkipCorrupt makes Load skip and count corrupt records instead of
	// failing.
	SkipCorrupt bool
	// ReadOnly opens an existing store without writing to it (petrel
	// store inspect). The directory lock is still taken: Pebble allows
	// one process per database even for reading. Commit fails.
	ReadOnly bool
	// CacheSize is the engine's block cache in bytes (default 64 MiB).
	CacheSize int64
	// MemTableSize is the engine's memtable size in bytes (default 16 MiB).
	MemTableSize uint64

	fs vfs.FS // tests: a file system that injects errors
}

type syncMode uint8

const (
	modeAlways syncMode = iota
	modeInterval
	modeNone
)

func (o *Options) mode() (syncMode, error) {
	switch o.Sync {
	case "", SyncAlways:
		return modeAlways, nil
	case SyncInterval:
		if o.SyncInterval < 0 {
			return 0, fmt.Errorf("diskstore: negative sync interval %v", o.SyncInterval)
		}
		return modeInterval, nil
	case SyncNone:
		return modeNone, nil
	}
	return 0, fmt.Errorf("diskstore: unknown sync mode %q (want %q, %q or %q)", o.Sync, SyncAlways, SyncInterval, SyncNone)
}

// Store is the Pebble-backed broker.Store. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	mode syncMode
	log  *slog.Logger
	db   *pebble.DB
	lock *os.File

	reqs    chan *request // to the committer; closed by Close
	stopped chan struct{} // closed when the committer returned

	failOnce sync.Once
	failed   chan struct{} // closed on a fatal engine error
	failErr  error         // set before failed is closed

	stats struct{ commits, groups, syncs atomic.Uint64 }

	corrupt int // records skipped by the last Load; guarded by loadMu
	loadMu  sync.Mutex

	// mu guards the ClientID to cid map. Commit holds it while resolving
	// cids and handing its batch to the committer, so that the map
	// changes in the order the committer applies the batches.
	mu struct {
		sync.Mutex
		closed  bool
		cids    map[string]uint64
		lastCid uint64 // highest cid allocated
	}
}

var _ broker.Store = (*Store)(nil)

// Open opens (creating it if needed) the store in dir and takes the
// directory lock; a directory held by another process fails with an error
// wrapping ErrLocked that names the holder's pid. A corrupt session record
// fails Open with an error naming its key unless opts.SkipCorrupt.
func Open(dir string, opts Options) (*Store, error) {
	mode, err := opts.mode()
	if err != nil {
		return nil, err
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 64 << 20
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = 16 << 20
	}
	s := &Store{dir: dir, opts: opts, mode: mode, log: opts.Logger, failed: make(chan struct{})}
	if opts.ReadOnly {
		if _, err := os.Stat(filepath.Join(dir, "pebble")); err != nil {
			return nil, fmt.Errorf("%w in %s: %w", ErrNoStore, dir, err)
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("diskstore: %w", err)
	}
	if s.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	if err := s.openDB(); err != nil {
		s.unlock()
		return nil, err
	}
	if !opts.ReadOnly {
		s.reqs = make(chan *request, maxGroupReqs)
		s.stopped = make(chan struct{})
		go s.run(s.mu.lastCid)
	}
	return s, nil
}

func (s *Store) openDB() error {
	cache := pebble.NewCache(s.opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:              cache,
		MemTableSize:       s.opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s},
		ReadOnly:           s.opts.ReadOnly,
		FS:                 s.opts.fs,
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	po.EnsureDefaults()
	db, err := pebble.Open(filepath.Join(s.dir, "pebble"), po)
	if err != nil {
		return fmt.Errorf("diskstore: open %s: %w", s.dir, err)
	}
	s.db = db
	if err := s.checkSchema(); err != nil {
		_ = db.Close() // the schema error is the one to report
		return err
	}
	if err := s.loadCids(); err != nil {
		_ = db.Close() // the load error is the one to report
		return err
	}
	return nil
}

// checkSchema reads the schema version, writing it into a new store.
func (s *Store) checkSchema() error {
	key := metaKey(metaVersion)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		it, err := s.db.NewIter(nil)
		if err != nil {
			return fmt.Errorf("diskstore: %w", err)
		}
		empty := !it.First()
		if err := it.Close(); err != nil {
			return fmt.Errorf("diskstore: %w", err)
		}
		if !empty {
			return fmt.Errorf("%w: key %s missing in a non-empty store", ErrCorrupt, formatKey(key))
		}
		if s.opts.ReadOnly {
			return nil
		}
		if err := s.db.Set(key, encodeMeta(schemaVersion), pebble.Sync); err != nil {
			return fmt.Errorf("diskstore: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("diskstore: read %s: %w", formatKey(key), err)
	}
	ver, err := decodeMeta(v)
	_ = closer.Close() // Get's closer only releases the value; its error carries nothing
	if err != nil {
		return fmt.Errorf("diskstore: key %s: %w", formatKey(key), err)
	}
	if ver != schemaVersion {
		return fmt.Errorf("%w: schema version %d in %s, this build reads %d", ErrUnknownFormat, ver, s.dir, schemaVersion)
	}
	return nil
}

// loadCids builds the ClientID to cid map from the session records.
func (s *Store) loadCids() error {
	s.mu.cids = make(map[string]uint64)
	key := metaKey(metaCid)
	v, closer, err := s.db.Get(key)
	switch {
	case err == nil:
		last, derr := decodeMeta(v)
		_ = closer.Close() // only releases the value
		if derr != nil {
			return fmt.Errorf("diskstore: key %s: %w", formatKey(key), derr)
		}
		s.mu.lastCid = last
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("diskstore: read %s: %w", formatKey(key), err)
	}
	lo, hi := tagRange(tagSession)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("diskstore: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		cid, _, err := decodeSession(it.Value())
		if err != nil {
			if s.opts.SkipCorrupt {
				continue // Load counts and logs it
			}
			err = keyError(it.Key(), err)
			_ = it.Close() // the record error is the one to report
			return err
		}
		s.mu.cids[string(it.Key()[2:])] = cid
		s.mu.lastCid = max(s.mu.lastCid, cid)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("diskstore: scan sessions: %w", err)
	}
	return nil
}

// keyError wraps a record error with the record's printable key.
func keyError(key []byte, err error) error {
	return fmt.Errorf("diskstore: key %s: %w", formatKey(key), err)
}

// Close stops the committer after the commits already handed to it,
// syncs the WAL, flushes the memtables, closes the engine and releases the directory lock.
// Commit fails with ErrClosed afterwards; a second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	if s.reqs != nil {
		close(s.reqs)
	}
	s.mu.Unlock()
	if s.stopped != nil {
		select {
		case <-s.stopped:
		case <-s.failed:
			// After a fatal engine error the committer may be stuck in
			// the engine's commit pipeline: give it a moment.
			select {
			case <-s.stopped:
			case <-time.After(closeGrace):
				s.unlock()
				return s.failErr // leaves the committer and the engine
			}
		}
	}
	var err error
	if s.failure() != nil {
		err = s.closeFailed()
	} else {
		if !s.opts.ReadOnly {
			// Flushing the memtables now spares the next Open a WAL replay.
			err = s.db.Flush()
		}
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
	}
	s.unlock()
	if err != nil {
		return fmt.Errorf("diskstore: close: %w", err)
	}
	select {
	case <-s.failed:
		return s.failErr
	default:
	}
	return nil
}

// closeGrace bounds the wait for the committer and the engine in Close
// after a fatal engine error.
const closeGrace = 2 * time.Second

// closeFailed closes the engine after a fatal error, giving up (and
// leaving its goroutines) if it does not return within closeGrace.
func (s *Store) closeFailed() error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // the engine may panic on its broken state: we are closing anyway
		_ = s.db.Close()                 // the fatal error is the one to report
	}()
	select {
	case <-done:
	case <-time.After(closeGrace):
	}
	return s.failErr
}

// fail records a fatal engine error; later commits return it.
func (s *Store) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = fmt.Errorf("%w: %w", ErrFailed, err)
		close(s.failed)
	})
}

// failure returns the fatal error, if any.
func (s *Store) failure() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// Corrupt returns the number of corrupt records the last Load skipped
// (with Options.SkipCorrupt).
func (s *Store) Corrupt() int {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	return s.corrupt
}

// Stats counts the work of the committer since Open.
type Stats struct {
	Commits uint64 // Commit calls that wrote something
	Groups  uint64 // engine commits (each one WAL write)
	Syncs   uint64 // WAL fsyncs
}

// Stats returns the committer's counters: Commits/Groups is the average
// group size, Syncs the number of fsyncs.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.stats.commits.Load(), Groups: s.stats.groups.Load(), Syncs: s.stats.syncs.Load()}
}

// pebbleLogger routes the engine's messages to the store's logger (its
// informational ones at debug level). A
// Fatalf (a failed WAL write) marks the store failed instead of exiting
// the process, and Commit reports it.
type pebbleLogger struct{ s *Store }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.s.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.s.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.log.Error("pebble: fatal: " + msg)
	l.s.fail(errors.New(msg))
}
