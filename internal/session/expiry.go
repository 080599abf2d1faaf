package session

import "time"

// SetExpiresAt records when the offline session's expiry interval runs
// out, for reports (the broker's admin API); the broker's timer, not this
// value, ends the session. Zero clears it.
func (s *Session) SetExpiresAt(t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	s.expiresAt.Store(ns)
}

// ExpiresAt returns what SetExpiresAt recorded, zero for nothing.
func (s *Session) ExpiresAt() time.Time {
	ns := s.expiresAt.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
