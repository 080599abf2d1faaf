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
// # A full disk
//
// A store never hangs on a full disk and never needs a restart to recover
// from one. It is unavailable, and Commit fails at once with an error
// wrapping ErrDiskFull (ErrFailed for another I/O error), from the moment
// the free space of the data directory drops below Options.MinFreeSpace
// (checked before a commit group every MiB written and every second, and
// before every group within spaceNear of the reserve) or the engine
// reports a failed write. What Pebble (v2.1) does on a full disk, and why
// the store stops early: it treats a failed WAL or MANIFEST write as fatal
// (Logger.Fatalf: its commit pipeline cannot go on, the engine must be
// reopened); it retries a failed memtable flush at once and forever
// (compaction.go: "TODO: count consecutive flush errors and backoff"),
// which spins, logs each failure and, once the memtables are full, stalls
// every later write; and it panics when it cannot close a WAL file while
// rotating it (a flush, a full memtable). The store therefore closes the
// engine at the first failure, which ends those retries, and reopens it
// once the directory has room again: the reserve, the WAL the engine
// flushes when it opens, the new WAL it preallocates and a margin (need).
// Against a disk filled between two checks, which the engine's own write
// finds first, the store holds a ballast file and gives it back at the
// first refused write, which then succeeds (ballast.go).
// Until then one goroutine checks the free space every second; nothing is
// logged but the failure and the recovery (and a reopening that fails,
// with growing delays). Commits of a failed engine's epoch are never
// applied by a later one.
//
// Open on a directory without that room opens the engine read-only, which
// writes nothing: Load works, the store is unavailable, and it reopens
// for writing as above. Should the disk fill while the engine flushes in
// Open (the free space was checked just before), the flush waits for room
// instead of retrying at once: Open returns an error wrapping ErrDiskFull,
// and a reopening waits.
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
	"strings"
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

// DefaultMinFreeSpace is the default of Options.MinFreeSpace: room for
// the engine to flush its memtables (16 MiB each, two at most) and to
// preallocate a WAL, twice over.
const DefaultMinFreeSpace = 64 << 20

// Errors of the store.
var (
	// ErrClosed is returned by Commit after Close.
	ErrClosed = errors.New("diskstore: store closed")
	// ErrLocked means another process holds the data directory.
	ErrLocked = errors.New("diskstore: data directory locked")
	// ErrReadOnly is returned by Commit on a store opened read-only.
	ErrReadOnly = errors.New("diskstore: store opened read-only")
	// ErrFailed wraps a fatal engine error; the store is unavailable
	// until it has reopened the engine.
	ErrFailed = errors.New("diskstore: store failed")
	// ErrDiskFull means the data directory has too little free space: the
	// store is unavailable until it has room again.
	ErrDiskFull = errors.New("diskstore: disk full")
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
	// MinFreeSpace is the free space of the data directory's file system,
	// in bytes, below which Commit refuses to write (the store is
	// unavailable until there is room again; see the package
	// documentation). 0 means DefaultMinFreeSpace; negative, no reserve:
	// the store then stops only at a failed write, which the engine may
	// answer by crashing the process (it panics when it cannot close a
	// WAL file).
	MinFreeSpace int64

	fs vfs.FS // tests: a file system that injects errors (default vfs.Default)
	// tests: how long riding writes wait for a sync, and how recent one
	// must be for them to wait (ride.go; 0: the defaults)
	rideWait, rideRecent time.Duration
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
	fs   vfs.FS
	lock *os.File

	// ep is the current epoch: the engine commits go to, and whether it
	// failed (health.go).
	ep atomic.Pointer[epoch]
	// bgLogged is the epoch whose first engine background error was
	// logged at error level (later ones go to debug).
	bgLogged atomic.Pointer[epoch]
	// ballastHeld: the ballast file exists and is the store's to give
	// back (ballast.go).
	ballastHeld atomic.Bool
	// ballastMu serializes releaseBallast (a leaf: nothing is taken
	// under it but the file system's removal).
	ballastMu sync.Mutex

	// eng is the open engine: writable, read-only, or none. The committer
	// (while it commits) and Load hold it for reading; the recovery
	// (while it closes and reopens the engine) and Close for writing.
	eng struct {
		sync.RWMutex
		db *pebble.DB // nil while no engine is open
		// noDB means no engine exists yet in the directory (a read-only
		// start found none): Load reports nothing.
		noDB bool
	}

	reqs       chan *request  // to the committer; closed by Close
	stopped    chan struct{}  // closed when the committer returned
	stop       chan struct{}  // closed by Close: the recovery ends
	recoveries sync.WaitGroup // recovery goroutines (health.go)

	stats struct{ commits, groups, syncs atomic.Uint64 }
	space spaceCheck // the committer's free-space checks (health.go)

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
		gen     uint64 // incremented when the map is read again from a reopened engine
	}
}

var _ broker.Store = (*Store)(nil)

// Open opens (creating it if needed) the store in dir and takes the
// directory lock; a directory held by another process fails with an error
// wrapping ErrLocked that names the holder's pid. A corrupt session record
// fails Open with an error naming its key unless opts.SkipCorrupt. On a
// file system without room to open the engine for writing, Open succeeds
// with the store unavailable (Err says why) and read-only until there is
// room; see the package documentation.
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
	if opts.MinFreeSpace == 0 {
		opts.MinFreeSpace = DefaultMinFreeSpace
	}
	s := &Store{dir: dir, opts: opts, mode: mode, log: opts.Logger, fs: opts.fs, stop: make(chan struct{})}
	if s.fs == nil {
		s.fs = vfs.Default
	}
	s.ep.Store(newEpoch(nil, 0))
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
	if opts.ReadOnly {
		if err := s.openReadOnly(); err != nil {
			s.unlock()
			return nil, err
		}
		return s, nil
	}
	s.adoptBallast()
	free, need, ok := s.room()
	if ok && free < need && s.releaseBallast() {
		free, need, ok = s.room()
	}
	if ok && free < need {
		if err := s.openReadOnly(); err != nil && !errors.Is(err, ErrNoStore) {
			s.unlock()
			return nil, err
		}
		s.startCommitter()
		s.fail(s.ep.Load(), s.fullError(free, need))
		return s, nil
	}
	ep, err := s.openAtStart()
	if err != nil {
		return nil, err
	}
	s.ep.Store(ep)
	s.makeBallast()
	s.startCommitter()
	return s, nil
}

// startCommitter starts the committer goroutine (commit.go).
func (s *Store) startCommitter() {
	s.reqs = make(chan *request, maxGroupReqs)
	s.stopped = make(chan struct{})
	go s.run()
}

// openReadOnly opens the engine read-only, as s.eng.db; with no engine in
// the directory yet it notes that (noDB) and returns an error wrapping
// ErrNoStore.
func (s *Store) openReadOnly() error {
	s.eng.Lock()
	defer s.eng.Unlock()
	if ls, err := s.fs.List(filepath.Join(s.dir, "pebble")); err != nil || !hasManifest(ls) {
		s.eng.noDB = true
		s.mu.cids = make(map[string]uint64)
		return fmt.Errorf("%w in %s", ErrNoStore, s.dir)
	}
	db, err := s.openDB(true, s.ep.Load(), nil)
	if err != nil {
		return err
	}
	cids, last, err := loadCids(db, s.opts.SkipCorrupt)
	if err != nil {
		_ = db.Close() // the load error is the one to report
		return err
	}
	s.eng.db = db
	s.mu.cids, s.mu.lastCid = cids, last
	return nil
}

// hasManifest reports whether a directory listing has a MANIFEST file.
func hasManifest(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") {
			return true
		}
	}
	return false
}

// openWritableLocked opens the engine for writing, as s.eng.db, with the
// ClientID to cid map read from it (under mu), and returns its epoch (not
// yet installed). A memtable flush failing in pebble.Open waits for room
// (park, health.go). The caller holds eng and no engine is open.
func (s *Store) openWritableLocked(a *openAttempt) (*epoch, error) {
	ep := newEpoch(nil, 0)
	db, err := s.openDB(false, ep, a)
	a.active.Store(false)
	if err == nil && a.fatal.Load() != nil {
		err = fmt.Errorf("%w: %s", ErrFailed, *a.fatal.Load())
		_ = s.closeDB(db, false) // the fatal error is the one to report
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkSchema(db, false); err != nil {
		_ = s.closeDB(db, false) // the schema error is the one to report
		return nil, err
	}
	cids, last, err := loadCids(db, s.opts.SkipCorrupt)
	if err != nil {
		_ = s.closeDB(db, false) // the load error is the one to report
		return nil, err
	}
	// M/"cid" is at least every cid in a session record; the committer
	// writes it again only above that.
	ep.db, ep.persisted = db, last
	s.mu.Lock()
	s.mu.cids, s.mu.lastCid = cids, last
	s.mu.gen++
	s.mu.Unlock()
	s.eng.db, s.eng.noDB = db, false
	return ep, nil
}

// openAtStart opens the engine for writing in Open. Should a flush in
// pebble.Open wait for room, Open gives up with an error wrapping
// ErrDiskFull and leaves that engine waiting (the process is expected to
// exit): it holds the engine's lock, so nothing else can open it.
func (s *Store) openAtStart() (*epoch, error) {
	a := newOpenAttempt()
	type result struct {
		ep  *epoch
		err error
	}
	done := make(chan result, 1)
	go func() {
		s.eng.Lock() // held for good if the open is abandoned: so is the store
		defer s.eng.Unlock()
		ep, err := s.openWritableLocked(a)
		done <- result{ep, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			s.unlock()
		}
		return r.ep, r.err
	case <-a.parked:
		close(s.stop) // the waiting flush stays parked
		s.unlock()
		free, need, _ := s.room()
		return nil, fmt.Errorf("%w: data directory %s: the disk filled while the store opened (%s free now, it needs %s)",
			ErrDiskFull, s.dir, size(free), size(need))
	}
}

// openDB opens the engine of epoch ep; a is the attempt of a writable
// opening (nil for read-only).
func (s *Store) openDB(readOnly bool, ep *epoch, a *openAttempt) (*pebble.DB, error) {
	cache := pebble.NewCache(s.opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:              cache,
		MemTableSize:       s.opts.MemTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s, ep, a},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { s.onBackgroundError(ep, a, err) },
		},
		ReadOnly: readOnly,
		FS:       s.fs,
	}
	if !readOnly {
		po.FS = ballastFS{FS: s.fs, s: s}
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	po.EnsureDefaults()
	db, err := pebble.Open(filepath.Join(s.dir, "pebble"), po)
	if err != nil {
		return nil, fmt.Errorf("diskstore: open %s: %w", s.dir, err)
	}
	if readOnly {
		if err := s.checkSchema(db, true); err != nil {
			_ = db.Close() // the schema error is the one to report
			return nil, err
		}
	}
	return db, nil
}

// checkSchema reads the schema version, writing it into a new store.
func (s *Store) checkSchema(db *pebble.DB, readOnly bool) error {
	key := metaKey(metaVersion)
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		it, err := db.NewIter(nil)
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
		if readOnly {
			return nil
		}
		if err := db.Set(key, encodeMeta(schemaVersion), pebble.Sync); err != nil {
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

// loadCids builds the ClientID to cid map from the session records and
// returns it with the highest cid allocated.
func loadCids(db *pebble.DB, skipCorrupt bool) (map[string]uint64, uint64, error) {
	cids := make(map[string]uint64)
	var last uint64
	key := metaKey(metaCid)
	v, closer, err := db.Get(key)
	switch {
	case err == nil:
		l, derr := decodeMeta(v)
		_ = closer.Close() // only releases the value
		if derr != nil {
			return nil, 0, fmt.Errorf("diskstore: key %s: %w", formatKey(key), derr)
		}
		last = l
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, 0, fmt.Errorf("diskstore: read %s: %w", formatKey(key), err)
	}
	lo, hi := tagRange(tagSession)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, 0, fmt.Errorf("diskstore: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		cid, _, err := decodeSession(it.Value())
		if err != nil {
			if skipCorrupt {
				continue // Load counts and logs it
			}
			err = keyError(it.Key(), err)
			_ = it.Close() // the record error is the one to report
			return nil, 0, err
		}
		cids[string(it.Key()[2:])] = cid
		last = max(last, cid)
	}
	if err := it.Close(); err != nil {
		return nil, 0, fmt.Errorf("diskstore: scan sessions: %w", err)
	}
	return cids, last, nil
}

// keyError wraps a record error with the record's printable key.
func keyError(key []byte, err error) error {
	return fmt.Errorf("diskstore: key %s: %w", formatKey(key), err)
}

// Close stops the committer after the commits already handed to it and
// the recovery of an unavailable store, flushes the memtables when the
// engine is healthy and has room (a flush that fails anyway is given up:
// the WAL keeps what it holds), closes the engine and releases the
// directory lock. It returns the store's failure while it is unavailable. Commit
// fails with ErrClosed afterwards; a second Close returns nil.
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
	select {
	case <-s.stop: // Open gave up on a parked engine
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	if s.stopped != nil {
		select {
		case <-s.stopped:
		case <-s.ep.Load().failed:
			// After a failure the committer may be stuck in the engine's
			// commit pipeline: give it a moment.
			select {
			case <-s.stopped:
			case <-time.After(closeGrace):
				s.unlock()
				return s.ep.Load().failure() // leaves the committer and the engine
			}
		}
	}
	if !waitGroup(&s.recoveries, closeGrace) {
		s.unlock()
		return fmt.Errorf("%w: close: the engine was reopening when the disk filled again; left waiting for room", ErrDiskFull)
	}
	s.eng.Lock()
	ep := s.ep.Load()
	// Flushing rotates the WAL, which the engine cannot survive without
	// room (it panics when the old WAL fails to close): without room the
	// WAL keeps its data for the next Open.
	free, need, known := s.room()
	flush := ep.failure() == nil && ep.db == s.eng.db && !s.opts.ReadOnly && (!known || free >= need)
	err := s.closeDB(s.eng.db, flush)
	s.eng.db = nil
	s.eng.Unlock()
	s.unlock()
	if ferr := ep.failure(); ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("diskstore: close: %w", err)
	}
	return nil
}

// closeGrace bounds the waits of Close for the committer and a recovery
// after a failure, and closeDB's wait for the engine.
const closeGrace = 5 * time.Second

// waitGroup waits for wg, at most d; it reports whether wg was done.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// closeDB closes db (nil: nothing), first flushing its memtables when
// flush, so that the next Open has no WAL to replay. A flush the engine
// reports failed or that does not finish within closeGrace is given up
// (the WAL keeps its data). A close that does not return within closeGrace
// is left behind: the engine may be broken by a fatal error (it may also
// panic, which is recovered: it is being closed anyway).
func (s *Store) closeDB(db *pebble.DB, flush bool) error {
	if db == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("diskstore: the engine panicked while closing: %v", p)
			}
		}()
		var err error
		if flush {
			err = s.flushDB(db)
		}
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(closeGrace):
		return errors.New("diskstore: the engine did not close in time; left behind")
	}
}

// flushDB flushes db's memtables, giving up when the flush fails (the
// engine reports it as a background error, which fails the epoch) or
// takes longer than closeGrace.
func (s *Store) flushDB(db *pebble.DB) error {
	ch, err := db.AsyncFlush()
	if err != nil {
		return err
	}
	ep := s.ep.Load()
	select {
	case <-ch:
		return nil
	case <-ep.failed:
		return nil // Close reports the failure
	case <-time.After(closeGrace):
		return errors.New("diskstore: flush at close did not finish; the WAL keeps its data")
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

// pebbleLogger routes the messages of the engine of epoch ep (opened by
// attempt a, nil for read-only) to the store's logger, its informational
// ones at debug level. A Fatalf (a failed WAL or MANIFEST write) fails
// the epoch instead of exiting the process (during the opening: the
// attempt), and Commit reports it.
type pebbleLogger struct {
	s  *Store
	ep *epoch
	a  *openAttempt
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.s.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.s.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.log.Error("pebble: fatal: " + msg)
	if l.a != nil && l.a.active.Load() {
		l.a.fatal.CompareAndSwap(nil, &msg) // openWritableLocked fails
		return
	}
	l.s.fail(l.ep, engineError(errors.New(msg)))
}
