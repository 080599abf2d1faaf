package interop_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// broker's, or a client library's that the test did not shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
