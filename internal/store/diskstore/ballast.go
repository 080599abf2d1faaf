package diskstore

import (
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The ballast: a file the store holds in its data directory while it is
// healthy, and gives back the moment a write of the engine finds the disk
// full, before the engine sees the failure.
//
// The store stops writing below its reserve (checkRoom), but it checks the
// free space only every MiB written or every second: another process can
// fill the disk in between. The engine (Pebble v2.1) does not survive a
// failed write of its WAL: the write error stays with the WAL writer, and
// the next commit (db.go, commitWrite: "panic(err)") or the WAL's rotation
// at a full memtable (rotateWAL) panics, which ends the process. So every
// file the engine writes goes through ballastFS: on ENOSPC or EDQUOT it
// fails the store's epoch (Commit refuses at once; the engine is closed
// and reopened once there is room, health.go), removes the ballast and
// writes again what was refused, into the room the ballast left. The
// engine's write then succeeds, and nothing panics. A sync is never
// retried: after a failed fsync the kernel may have dropped the data, and
// a second fsync could report success for it.
//
// The ballast holds what the engine may still write before the store has
// closed it (ballastSize). It is held only while the engine is open for
// writing: made (or, from an earlier run, adopted) when it opens with room
// for it beyond what opening needs (room), given back when the engine
// fails for any reason (a failed engine writes nothing, and the room
// helps the store reopen), and at Open when the disk has not the room to
// open without it. It is not made with MinFreeSpace negative (no
// reserve).

// ballastName is the ballast's file in the data directory.
const ballastName = "ballast"

// ballastSize is the ballast's size: a WAL the engine preallocates when it
// rotates (110% of a memtable) and openMargin for the rest of the WAL
// block and the MANIFEST.
func (s *Store) ballastSize() int64 { return int64(s.opts.MemTableSize)*11/10 + openMargin }

// adoptBallast holds the ballast an earlier run left, if any.
func (s *Store) adoptBallast() {
	if s.opts.MinFreeSpace < 0 {
		return
	}
	if fi, err := s.fs.Stat(filepath.Join(s.dir, ballastName)); err == nil && fi.Size() >= s.ballastSize() {
		s.ballastHeld.Store(true)
	}
}

// makeBallast makes the ballast, unless it is held already or there is
// no room for it; a store without one works as before it (the reserve
// only). Called once the engine is open for writing.
func (s *Store) makeBallast() {
	if s.opts.MinFreeSpace < 0 || s.ballastHeld.Load() {
		return
	}
	path := filepath.Join(s.dir, ballastName)
	size := s.ballastSize()
	if free, need, ok := s.room(); !ok || free < need+size {
		s.log.Info("diskstore: no room for the ballast; the reserve alone guards against a full disk", "data_dir", s.dir, "ballast", size)
		return
	}
	if err := s.writeBallast(path, size); err != nil {
		_ = s.fs.Remove(path) // a partial ballast is of no use; it may not exist
		s.log.Warn("diskstore: making the ballast failed; the reserve alone guards against a full disk", "data_dir", s.dir, "err", err)
		return
	}
	s.ballastHeld.Store(true)
}

// releaseBallast gives the ballast back, if held; it reports whether it
// did. Writes that find no room at the same moment all come here:
// ballastMu makes the ones that lose the race wait until the winner's
// removal is done, so that their own retry finds the room it made.
func (s *Store) releaseBallast() bool {
	s.ballastMu.Lock()
	defer s.ballastMu.Unlock()
	if !s.ballastHeld.CompareAndSwap(true, false) {
		return false
	}
	if err := s.fs.Remove(filepath.Join(s.dir, ballastName)); err != nil {
		s.log.Error("diskstore: removing the ballast failed", "data_dir", s.dir, "err", err)
		return false
	}
	return true
}

func (s *Store) writeBallast(path string, size int64) error {
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			_ = f.Close() // the write error is the one to report
			return err
		}
		left -= n
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error is the one to report
		return err
	}
	return f.Close()
}

// noSpace is called by a write of the engine that the file system refused
// for lack of space (err): it gives back the ballast, then fails the
// running engine's epoch (so a Commit refused for it finds the ballast
// gone). The write is always worth one more try: this call or a
// concurrent one (two of the engine's writers can find the disk full at
// once: the WAL's and a flush's) has just given the room back, and the
// engine keeps a failed WAL write and panics at its next rotation. When
// there was no ballast the second try fails as the first did.
func (s *Store) noSpace(err error) (retry bool) {
	if s.releaseBallast() {
		s.log.Warn("diskstore: the disk filled between checks: ballast given back so that the engine stops cleanly",
			"data_dir", s.dir, "ballast", size(s.ballastSize()))
	}
	if ep := s.ep.Load(); ep.db != nil {
		s.fail(ep, engineError(err))
	}
	return true
}

type ballastFS struct {
	vfs.FS
	s *Store
}

func (b ballastFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return ballastFile{File: f, s: b.s}, nil
}

// Create implements vfs.FS.
func (b ballastFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return b.wrap(b.FS.Create(name, category))
}

// OpenReadWrite implements vfs.FS.
func (b ballastFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return b.wrap(b.FS.OpenReadWrite(name, category, opts...))
}

// ReuseForWrite implements vfs.FS.
func (b ballastFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return b.wrap(b.FS.ReuseForWrite(oldname, newname, category))
}

// ballastFile writes again, once, what the file system refused for lack
// of space, when the store gave back its ballast (Store.noSpace).
type ballastFile struct {
	vfs.File
	s *Store
}

// Write implements vfs.File.
func (f ballastFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err != nil && isNoSpace(err) && f.s.noSpace(err) {
		m, err := f.File.Write(p[n:])
		return n + m, err
	}
	return n, err
}

// WriteAt implements vfs.File.
func (f ballastFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	if err != nil && isNoSpace(err) && f.s.noSpace(err) {
		m, err := f.File.WriteAt(p[n:], off+int64(n))
		return n + m, err
	}
	return n, err
}

// Preallocate implements vfs.File.
func (f ballastFile) Preallocate(off, length int64) error {
	err := f.File.Preallocate(off, length)
	if err != nil && isNoSpace(err) && f.s.noSpace(err) {
		err = f.File.Preallocate(off, length)
	}
	return err
}
