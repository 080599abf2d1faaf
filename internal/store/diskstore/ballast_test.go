package diskstore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// freeingFS is a faultFS, reporting ample free space whatever it holds
// (the store's checks never see the disk fill: another process fills it
// between them), whose fullness ends when the store removes its ballast,
// as the room the ballast gave back would.
type freeingFS struct{ *lyingFS }

func (f freeingFS) Remove(name string) error {
	if filepath.Base(name) == ballastName {
		f.full.Store(false)
	}
	return f.lyingFS.Remove(name)
}

// TestDiskFillingBetweenChecksNeverPanics: the disk fills between the
// store's free-space checks while unsynced commits keep the engine's WAL
// writer busy, so that the engine's own write is the first to find no
// room. The engine keeps a failed WAL write and panics at the next commit
// or WAL rotation; the store gives back its ballast instead, so the
// write succeeds, and refuses commits from then on (ErrDiskFull), without
// a panic. Once there is room the store reopens and holds a ballast
// again.
func TestDiskFillingBetweenChecksNeverPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T) (*diskEnv, *lyingFS)
	}{
		{"fault-injection", func(t *testing.T) (*diskEnv, *lyingFS) {
			l := &lyingFS{faultFS: newFaultFS()}
			return &diskEnv{dir: t.TempDir(), fs: freeingFS{l}, fill: func() { l.full.Store(true) }, free: func() {}}, l
		}},
		{"loop-mount", func(t *testing.T) (*diskEnv, *lyingFS) {
			env := loopEnv(t, 32)
			l := &lyingFS{faultFS: newFaultFS()} // never full: the loop file system is
			env.fs = l
			return env, l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, l := tc.env(t)
			l.lie.Store(true)
			logger, _ := newCountingLogger(t)
			s, err := Open(env.dir, fullOptions(env, logger, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ballast := filepath.Join(env.dir, ballastName)
			if fi, err := os.Stat(ballast); err != nil || fi.Size() != s.ballastSize() {
				t.Fatalf("no ballast of %d bytes after Open: %v", s.ballastSize(), err)
			}
			if err := s.Commit(enqueueOps("a", 1, 1), true); err != nil {
				t.Fatal(err)
			}
			env.fill()
			seq := uint64(2)
			var refused error
			within(t, 20*time.Second, "commits on a disk that filled", func() {
				for range 2000 { // 32 messages of 512 B each: far beyond a memtable of 256 KiB
					if refused = s.Commit(enqueueOps("a", seq, seq+31), false); refused != nil {
						return
					}
					seq += 32
				}
			})
			if !errors.Is(refused, ErrDiskFull) {
				t.Fatalf("commits on a full disk: %v, want ErrDiskFull", refused)
			}
			if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the ballast is still there: %v", err)
			}
			env.free()
			eventuallyAvailable(t, s, "a", seq+100)
			if fi, err := os.Stat(ballast); err != nil || fi.Size() != s.ballastSize() {
				t.Fatalf("no ballast after the recovery: %v", err)
			}
		})
	}
}
