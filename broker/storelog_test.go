package broker

import (
	"testing"
	"time"
)

// TestStoreErrorsLoggedOncePerInterval: an unavailable store fails every
// write; the failures are logged once per storeErrLogEvery with the count
// of those not logged, not once each.
func TestStoreErrorsLoggedOncePerInterval(t *testing.T) {
	var l storeErrLog
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at         time.Duration
		logged     bool
		suppressed int
	}{
		{0, true, 0},
		{time.Millisecond, false, 0},
		{storeErrLogEvery / 2, false, 0},
		{storeErrLogEvery - time.Millisecond, false, 0},
		{storeErrLogEvery, true, 3},
		{storeErrLogEvery + time.Second, false, 0},
		{3 * storeErrLogEvery, true, 1},
	} {
		logged, n := l.allow(t0.Add(step.at))
		if logged != step.logged || n != step.suppressed {
			t.Errorf("failure at +%v: logged %v with %d suppressed, want %v with %d", step.at, logged, n, step.logged, step.suppressed)
		}
	}
}
