//go:build !linux

package transport

import (
	"log/slog"
	"time"
)

// Parker is Linux-only (epoll); elsewhere idle connections keep their
// goroutine.
type Parker struct{}

// NewParker returns a parker that never parks.
func NewParker(*slog.Logger) *Parker { return &Parker{} }

// Parked is always 0 here.
func (*Parker) Parked() int64 { return 0 }

// Promotions is always 0 here.
func (*Parker) Promotions() uint64 { return 0 }

// Stop does nothing here.
func (*Parker) Stop() {}

func (*Parker) available() bool { return false }

func (*Parker) park(*Conn, time.Time) bool { return false }

func (*Parker) wake(*Conn) {}
