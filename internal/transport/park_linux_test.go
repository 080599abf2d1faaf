//go:build linux && !386

package transport

import (
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingOwner counts Unpark calls.
type countingOwner struct{ n atomic.Int32 }

func (o *countingOwner) Unpark() { o.n.Add(1) }

// openFDs is the number of descriptors the process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPromotionRacesClose parks raw connections and then, at once, makes
// one promote (a read with nothing to read, which moves the parker's
// registration under the connection's lock), closes it from another
// goroutine and writes to it from a third: run under -race it checks the
// locking of promotion, close and the parker; after it every parked Conn
// was unparked exactly once (never lost, never twice), none stays in the
// parker's index, and no descriptor leaked.
func TestPromotionRacesClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := Of(ln)
	if a == nil {
		t.Fatal("Of(*net.TCPListener) = nil on Linux")
	}
	defer a.Close()
	p := NewParker(slog.New(slog.DiscardHandler))
	defer p.Stop()
	if !p.available() {
		t.Fatal("parker unavailable")
	}
	base := openFDs(t)
	const rounds = 200
	for i := range rounds {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc, err := a.AcceptRaw()
		if err != nil {
			t.Fatal(err)
		}
		var o countingOwner
		var c Conn
		if !c.Open(nc, p, &o) {
			t.Fatal("Open of a RawConn reported not raw")
		}
		if !c.Park(time.Time{}) {
			t.Fatal("Park failed")
		}
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { // promotes: nothing to read, so it must wait
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var buf [8]byte
			if n, err := c.Read(buf[:]); err == nil {
				t.Errorf("round %d: Read = %d bytes, want an error (closed or deadline)", i, n)
			}
		}()
		go func() {
			defer wg.Done()
			if i%2 == 1 {
				time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
			}
			_ = nc.Close()
		}()
		go func() {
			defer wg.Done()
			_ = c.WriteAll([]byte("x")) // before or after the close: either is fine
		}()
		wg.Wait()
		c.Wake() // the broker's close path: wake it unless something did
		if n := o.n.Load(); n != 1 {
			t.Fatalf("round %d: Unpark called %d times for one park, want 1", i, n)
		}
		if reg, _, parked := c.State(); parked {
			t.Fatalf("round %d: still in the parker's index (registered under %d) after Wake", i, reg)
		}
		_ = cl.Close()
	}
	if got := p.Parked(); got != 0 {
		t.Errorf("Parked() = %d after every Conn was woken, want 0", got)
	}
	if p.Promotions() == 0 {
		t.Error("no promotion happened: the test did not race promotion with close")
	}
	eventually(t, func() bool { return openFDs(t) <= base }, "every descriptor to be closed")
}

// TestParkerUnparksOnData: a parked Conn's owner is unparked when bytes
// arrive, once, and on its deadline when none do.
func TestParkerUnparksOnData(t *testing.T) {
	p := NewParker(slog.New(slog.DiscardHandler))
	defer p.Stop()
	for _, tc := range []struct {
		name     string
		send     bool
		deadline time.Duration
	}{
		{"bytes", true, 0},
		{"deadline", false, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, cl := pair(t)
			var o countingOwner
			var c Conn
			if !c.Open(rc, p, &o) {
				t.Fatal("Open of a RawConn reported not raw")
			}
			var dl time.Time
			if tc.deadline > 0 {
				dl = time.Now().Add(tc.deadline)
			}
			if !c.Park(dl) {
				t.Fatal("Park failed")
			}
			if tc.send {
				if _, err := cl.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, func() bool { return o.n.Load() == 1 }, "Unpark")
			c.Wake() // not parked any more: no second Unpark
			if n := o.n.Load(); n != 1 {
				t.Fatalf("Unpark called %d times, want 1", n)
			}
			if tc.send {
				var buf [4]byte
				if n, err := c.TryRead(buf[:]); err != nil || n != 1 {
					t.Fatalf("TryRead after the wake = %d, %v; want the byte", n, err)
				}
			}
			if _, err := c.TryRead(make([]byte, 4)); err != ErrWouldBlock {
				t.Fatalf("TryRead with nothing buffered = %v, want ErrWouldBlock", err)
			}
			_ = cl.Close()
			if _, err := c.Read(make([]byte, 4)); err != io.EOF {
				t.Fatalf("Read after the peer closed = %v, want io.EOF", err)
			}
		})
	}
}

// TestParkerStopWaitsForItsGoroutine: Stop ends the parker's goroutine
// before it returns, and no Conn parks after it.
func TestParkerStopWaitsForItsGoroutine(t *testing.T) {
	p := NewParker(slog.New(slog.DiscardHandler))
	if !p.available() {
		t.Fatal("parker unavailable")
	}
	p.mu.Lock()
	done := p.mu.done
	p.mu.Unlock()
	p.Stop()
	select {
	case <-done:
	default:
		t.Fatal("Stop returned before the parker's goroutine ended")
	}
	rc, _ := pair(t)
	var c Conn
	if !c.Open(rc, p, &countingOwner{}) {
		t.Fatal("Open of a RawConn reported not raw")
	}
	if c.CanPark() || c.Park(time.Time{}) {
		t.Fatal("a Conn parked after Stop")
	}
}
