package diskstore

import (
	"errors"
	"io/fs"
	"path/filepath"
)

// DiskUsage returns the bytes of the files under the store's directory
// (broker.DiskUser): what the store takes on disk, its write-ahead log
// included. A file removed during the walk (a compaction) is skipped.
func (s *Store) DiskUsage() (int64, error) {
	var n int64
	err := filepath.WalkDir(s.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}
