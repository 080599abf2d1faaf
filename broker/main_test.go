package broker_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// goroutine the broker starts has an owner that waits for it (DESIGN.md
// section 6, rule 4), so none may outlive Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
