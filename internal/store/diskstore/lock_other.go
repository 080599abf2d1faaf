//go:build !unix

package diskstore

import "os"

// lockDir is a no-op where flock is not available: Pebble's own LOCK file
// still keeps a second process out, with a less helpful message.
func lockDir(dir string) (*os.File, error) { return nil, nil }

// unlock releases the directory lock.
func (s *Store) unlock() {}
