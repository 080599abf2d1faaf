package diskstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// diskEnv is a data directory on a file system a test can fill and free.
type diskEnv struct {
	dir  string
	fs   vfs.FS // for Options.fs; nil: the real one
	fill func() // make the file system full
	free func() // give the space back
	// refused counts the writes the file system refused while full (nil
	// where it cannot be counted).
	refused *atomic.Int64
}

// faultFS is a vfs.FS that can be made full: then every file write, sync
// and preallocation fails with ENOSPC, and GetDiskUsage reports no free
// space.
type faultFS struct {
	*errorfs.FS
	full    atomic.Bool
	refused atomic.Int64
	sstOnly atomic.Bool // while full, refuse only writes of tables (.sst)
}

func newFaultFS() *faultFS {
	f := &faultFS{}
	f.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !f.full.Load() || (f.sstOnly.Load() && !strings.HasSuffix(op.Path, ".sst")) {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
			errorfs.OpFileSyncTo, errorfs.OpFilePreallocate:
			f.refused.Add(1)
			return syscall.ENOSPC
		}
		return nil
	}))
	return f
}

func (f *faultFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	du, err := f.FS.GetDiskUsage(path)
	if f.full.Load() {
		du.AvailBytes = 0
	}
	return du, err
}

// faultEnv is a diskEnv with a faultFS over a temporary directory.
func faultEnv(t *testing.T) *diskEnv {
	f := newFaultFS()
	return &diskEnv{dir: t.TempDir(), fs: f, fill: func() { f.full.Store(true) }, free: func() { f.full.Store(false) },
		refused: &f.refused}
}

// loopEnv is a diskEnv on an ext4 file system of sizeMiB in a loop-mounted
// file (mqtttest.MountLoop: root only).
func loopEnv(t *testing.T, sizeMiB int64) *diskEnv {
	t.Helper()
	mnt := mqtttest.MountLoop(t, sizeMiB)
	filler := filepath.Join(mnt, "filler")
	return &diskEnv{dir: filepath.Join(mnt, "data"), fill: func() { mqtttest.FillFS(t, filler) }, free: func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}}
}

// diskEnvs runs fn on a fault-injecting file system and on a loop-mounted one.
func diskEnvs(t *testing.T, fn func(t *testing.T, env *diskEnv)) {
	t.Run("fault-injection", func(t *testing.T) { fn(t, faultEnv(t)) })
	t.Run("loop-mount", func(t *testing.T) { fn(t, loopEnv(t, 32)) })
}

// countingLogger counts every record, and logs to t the warnings and
// above.
type countingLogger struct {
	slog.Handler
	n *atomic.Int64
}

func newCountingLogger(t *testing.T) (*slog.Logger, *atomic.Int64) {
	n := new(atomic.Int64)
	return slog.New(countingLogger{slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}), n}), n
}

func (c countingLogger) Enabled(context.Context, slog.Level) bool { return true }

func (c countingLogger) Handle(ctx context.Context, r slog.Record) error {
	c.n.Add(1)
	if r.Level < slog.LevelWarn {
		return nil
	}
	return c.Handler.Handle(ctx, r)
}

func (c countingLogger) WithAttrs(as []slog.Attr) slog.Handler {
	return countingLogger{c.Handler.WithAttrs(as), c.n}
}

func (c countingLogger) WithGroup(name string) slog.Handler {
	return countingLogger{c.Handler.WithGroup(name), c.n}
}

// fullOptions are the options of the disk-full tests: small memtables (a
// small WAL preallocation), so that a small file system holds the store.
func fullOptions(env *diskEnv, logger *slog.Logger, reserve int64) Options {
	return Options{fs: env.fs, Logger: logger, MemTableSize: 256 << 10, CacheSize: 1 << 20, MinFreeSpace: reserve}
}

// within runs fn and fails t if it does not return in d: the mechanism
// under test must never hang.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// enqueueOps are the operations storing session id with deliveries
// from..to.
func enqueueOps(id string, from, to uint64) *broker.Batch {
	var b broker.Batch
	b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: broker.NoExpiry}})
	for seq := from; seq <= to; seq++ {
		b.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
			Seq: seq, QoS: 1, Msg: broker.StoredMessage{Topic: "full/" + id, Payload: make([]byte, 512), QoS: 1},
		}})
	}
	return &b
}

// commitUntilRefused commits durable batches until the store refuses one;
// it returns the error.
func commitUntilRefused(t *testing.T, s *Store, id string) error {
	t.Helper()
	for i := range 4096 {
		var err error
		within(t, 10*time.Second, "Commit on a full disk", func() {
			err = s.Commit(enqueueOps(id, uint64(100+4*i), uint64(103+4*i)), true)
		})
		if err != nil {
			return err
		}
	}
	t.Fatal("4096 commits on a full disk all succeeded")
	return nil
}

// quiet checks that an unavailable store does next to nothing for a
// while: no retried writes, no stream of log lines (the engine's own
// retries of a failed flush wrote ~280 lines a second).
func quiet(t *testing.T, env *diskEnv, logged *atomic.Int64) {
	t.Helper()
	logs0 := logged.Load()
	var refused0 int64
	if env.refused != nil {
		refused0 = env.refused.Load()
	}
	time.Sleep(1500 * time.Millisecond) // a span to count in, not a wait for an event
	if n := logged.Load() - logs0; n > 10 {
		t.Errorf("%d log records in 1.5 s while unavailable; want a quiet store", n)
	}
	if env.refused != nil {
		if n := env.refused.Load() - refused0; n > 10 {
			t.Errorf("%d writes tried and refused in 1.5 s while unavailable; want none retried", n)
		}
	}
}

// eventuallyAvailable waits (15 s at most) until a commit succeeds.
func eventuallyAvailable(t *testing.T, s *Store, id string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		within(t, 10*time.Second, "Commit while recovering", func() { err = s.Commit(enqueueOps(id, seq, seq), true) })
		if err == nil {
			if s.Err() != nil {
				t.Fatalf("a commit succeeded but Err says %v", s.Err())
			}
			return
		}
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Commit while recovering: %v; want ErrDiskFull until it succeeds", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 15 s after space was freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueOf loads the store and returns the seqs queued for id.
func queueOf(t *testing.T, s *Store, id string) []uint64 {
	t.Helper()
	st, err := broker.LoadAll(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ss := range st.Sessions {
		if ss.ClientID == id {
			for _, d := range ss.Queue {
				seqs = append(seqs, d.Seq)
			}
		}
	}
	return seqs
}

// hasSeqs reports whether seqs holds every one of want.
func hasSeqs(seqs []uint64, want ...uint64) bool {
	have := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		have[s] = true
	}
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}

// TestDiskFullWhileRunning: when the disk fills, Commit fails with
// ErrDiskFull and never hangs, the store is quiet while unavailable (the
// failed engine is closed: no retry loop), and once space is freed it
// reopens the engine by itself: commits succeed again, and what was
// committed before and after is there after a restart. With a reserve
// the store stops before the engine sees a failed write; without one, at
// the first failed write (only with injected faults: on a real full disk
// the engine may then panic, see Options.MinFreeSpace).
func TestDiskFullWhileRunning(t *testing.T) {
	for _, reserve := range []int64{-1, 2 << 20} {
		t.Run(fmt.Sprintf("reserve=%d", reserve), func(t *testing.T) {
			envs := diskEnvs
			if reserve < 0 {
				envs = func(t *testing.T, fn func(t *testing.T, env *diskEnv)) {
					t.Run("fault-injection", func(t *testing.T) { fn(t, faultEnv(t)) })
				}
			}
			envs(t, func(t *testing.T, env *diskEnv) {
				logger, logged := newCountingLogger(t)
				opts := fullOptions(env, logger, reserve)
				s := openT(t, env.dir, opts)
				if err := s.Commit(enqueueOps("c", 1, 3), true); err != nil {
					t.Fatal(err)
				}
				env.fill()
				err := commitUntilRefused(t, s, "c")
				if !errors.Is(err, ErrDiskFull) || !errors.Is(s.Err(), ErrDiskFull) {
					t.Fatalf("Commit on a full disk: %v, Err %v; want ErrDiskFull", err, s.Err())
				}
				t.Logf("refused: %v", err)
				quiet(t, env, logged)
				within(t, time.Second, "Commit of an unavailable store", func() {
					if err := s.Commit(enqueueOps("c", 10, 10), true); !errors.Is(err, ErrDiskFull) {
						t.Errorf("Commit while unavailable: %v; want ErrDiskFull", err)
					}
				})
				env.free()
				eventuallyAvailable(t, s, "c", 50_000)
				within(t, 10*time.Second, "Close", func() {
					if err := s.Close(); err != nil {
						t.Errorf("Close after the recovery: %v", err)
					}
				})
				s = openT(t, env.dir, opts)
				defer closeT(t, s)
				if seqs := queueOf(t, s, "c"); !hasSeqs(seqs, 1, 2, 3, 50_000) {
					t.Fatalf("after a restart session c has %v; want 1, 2, 3 (before the disk filled) and 50000 (after)", seqs)
				}
			})
		})
	}
}

// TestOpenOnFullDisk: a store restarted on a full disk, its WAL holding
// what the failed flush at the last Close could not write (the engine
// flushes it when it opens for writing, which would retry forever), opens
// at once: read-only, Load has everything, Commit fails with
// ErrDiskFull, nothing spins; once space is freed it becomes writable by
// itself. A first start on a full disk (no store yet) behaves the same.
func TestOpenOnFullDisk(t *testing.T) {
	diskEnvs(t, func(t *testing.T, env *diskEnv) {
		logger, logged := newCountingLogger(t)
		opts := fullOptions(env, logger, 2<<20)
		s := openT(t, env.dir, opts)
		if err := s.Commit(enqueueOps("c", 1, 200), true); err != nil {
			t.Fatal(err)
		}
		env.fill()
		within(t, 10*time.Second, "Close on a full disk", func() {
			t.Logf("Close on a full disk: %v", s.Close())
		})

		var err error
		within(t, 10*time.Second, "Open on a full disk", func() { s, err = Open(env.dir, opts) })
		if err != nil {
			t.Fatalf("Open on a full disk: %v; want an unavailable store", err)
		}
		defer closeT(t, s)
		if !errors.Is(s.Err(), ErrDiskFull) {
			t.Fatalf("Err after Open on a full disk: %v; want ErrDiskFull", s.Err())
		}
		if seqs := queueOf(t, s, "c"); len(seqs) != 200 {
			t.Fatalf("Load on a full disk: %d deliveries of c, want 200", len(seqs))
		}
		if err := s.Commit(enqueueOps("c", 300, 300), true); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Commit on a full disk: %v; want ErrDiskFull", err)
		}
		quiet(t, env, logged)
		env.free()
		eventuallyAvailable(t, s, "c", 301)
		if seqs := queueOf(t, s, "c"); len(seqs) != 201 || !hasSeqs(seqs, 1, 200, 301) {
			t.Fatalf("after the recovery c has %d deliveries; want 1..200 and 301", len(seqs))
		}
	})
}

// TestFirstOpenOnFullDisk: a store opened for the first time on a full
// disk is unavailable and empty, and is created once space is freed.
func TestFirstOpenOnFullDisk(t *testing.T) {
	diskEnvs(t, func(t *testing.T, env *diskEnv) {
		logger, _ := newCountingLogger(t)
		if err := os.MkdirAll(env.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		env.fill()
		var s *Store
		var err error
		within(t, 10*time.Second, "Open on a full disk", func() { s, err = Open(env.dir, fullOptions(env, logger, 2<<20)) })
		if err != nil {
			t.Fatalf("Open on a full disk: %v; want an unavailable store", err)
		}
		defer closeT(t, s)
		if !errors.Is(s.Err(), ErrDiskFull) {
			t.Fatalf("Err: %v; want ErrDiskFull", s.Err())
		}
		if seqs := queueOf(t, s, "c"); len(seqs) != 0 {
			t.Fatalf("a new store loads %v", seqs)
		}
		env.free()
		eventuallyAvailable(t, s, "c", 1)
	})
}

// TestDiskFillsWhileReopening: when the disk fills again while the
// recovery reopens the engine (its flush of the WAL fails in pebble.Open),
// the flush waits for room, retried once a second at most instead of at
// once and forever, and completes once there is room.
func TestDiskFillsWhileReopening(t *testing.T) {
	f := newFaultFS()
	fs := &lyingFS{faultFS: f}
	env := &diskEnv{dir: t.TempDir(), fs: fs, refused: &f.refused}
	logger, logged := newCountingLogger(t)
	parked := make(chan struct{})
	var once atomic.Bool
	logger = slog.New(watchingHandler{logger.Handler(), "its flush waits for room", func() {
		if once.CompareAndSwap(false, true) {
			close(parked)
		}
	}})
	s := openT(t, env.dir, fullOptions(env, logger, -1))
	defer closeT(t, s)
	if err := s.Commit(enqueueOps("c", 1, 100), true); err != nil {
		t.Fatal(err)
	}
	// Writes fail while the free space looks ample: the recovery's check
	// passes and the engine's flush in pebble.Open fails.
	fs.lie.Store(true)
	f.full.Store(true)
	if err := commitUntilRefused(t, s, "c"); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Commit: %v; want ErrDiskFull", err)
	}
	f.sstOnly.Store(true) // the reopening gets as far as its flush
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		t.Fatal("the reopening engine's failed flush did not wait for room")
	}
	quiet(t, env, logged)
	fs.lie.Store(false)
	f.full.Store(false)
	eventuallyAvailable(t, s, "c", 500)
	if seqs := queueOf(t, s, "c"); !hasSeqs(seqs, 1, 100, 500) {
		t.Fatalf("after the recovery c has %v", seqs)
	}
}

// lyingFS reports ample free space while lie is set, whatever the
// faultFS says.
type lyingFS struct {
	*faultFS
	lie atomic.Bool
}

func (l *lyingFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	du, err := l.faultFS.GetDiskUsage(path)
	if l.lie.Load() {
		du.AvailBytes = 1 << 40
	}
	return du, err
}

// watchingHandler calls seen for every record whose message contains msg.
type watchingHandler struct {
	slog.Handler
	msg  string
	seen func()
}

func (w watchingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, w.msg) {
		w.seen()
	}
	return w.Handler.Handle(ctx, r)
}

// parkChildEnv names the data directory of a park child process.
const parkChildEnv = "PETREL_DISKSTORE_PARK_DIR"

// parkChild is the child of TestOpenGivesUpWhenTheDiskFillsWhileOpening:
// it opens the store in its directory on a file system that refuses every
// table write while it reports ample free space (the disk fills just as
// the engine flushes its WAL in Open), prints Open's error and exits 1 on
// ErrDiskFull, 3 otherwise.
func parkChild() {
	f := newFaultFS()
	fs := &lyingFS{faultFS: f}
	fs.lie.Store(true)
	f.sstOnly.Store(true)
	f.full.Store(true)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, err := Open(os.Getenv(parkChildEnv), Options{fs: fs, Logger: logger, MemTableSize: 256 << 10, CacheSize: 1 << 20})
	fmt.Println("open:", err)
	if errors.Is(err, ErrDiskFull) {
		os.Exit(1)
	}
	os.Exit(3)
}

// TestOpenGivesUpWhenTheDiskFillsWhileOpening: should the disk fill just
// as Open's engine flushes the WAL (the free space looked ample), Open
// returns an error wrapping ErrDiskFull naming the data directory within
// seconds instead of waiting (a broker then exits with that line). The
// parked engine is abandoned, so this runs in a child process.
func TestOpenGivesUpWhenTheDiskFillsWhileOpening(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	env := faultEnv(t)
	opts := fullOptions(env, testLogger(t), 2<<20)
	s := openT(t, env.dir, opts)
	if err := s.Commit(enqueueOps("c", 1, 50), true); err != nil {
		t.Fatal(err)
	}
	env.fill() // Close finds no room to flush: the WAL keeps the data
	t.Logf("Close on a full disk: %v", s.Close())

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), parkChildEnv+"="+env.dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "open: "+ErrDiskFull.Error()) ||
			!strings.Contains(out.String(), env.dir) {
			t.Fatalf("child: %v\n%s\nwant Open to fail with ErrDiskFull naming %s", err, out.String(), env.dir)
		}
		t.Logf("child: %s", out.String())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill() // the test fails anyway
		t.Fatalf("Open did not return within 20 s while the disk filled during its flush\n%s", out.String())
	}
}
