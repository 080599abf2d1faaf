//go:build !linux

package broker

import (
	"syscall"
	"time"
)

// parker is Linux-only; elsewhere idle connections keep their goroutine.
type parker struct{}

func newParker(*Broker) *parker { return &parker{} }

func (*parker) available() bool { return false }

func (*parker) park(*conn, syscall.RawConn, time.Time) bool { return false }

func (*parker) wake(*conn) {}

func (*parker) stop() {}

// FDMoved does nothing: there is no parker's set to move a descriptor in
// (and no raw connections outside Linux).
func (c *conn) FDMoved(old, new int) {}
