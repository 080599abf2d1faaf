package ratelog

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// capture is a slog.Handler keeping every record.
type capture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

func (c *capture) lines(msg string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, r := range c.recs {
		if r.Message != msg {
			continue
		}
		m := map[string]any{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
		out = append(out, m)
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, o Options) (*Limiter, *capture, *clock) {
	t.Helper()
	c := &capture{}
	clk := &clock{t: time.Unix(1_000_000, 0)}
	o.Now = clk.now
	if o.Interval == 0 {
		o.Interval = time.Hour // reports only when the test flushes
	}
	l := New(slog.New(c), o)
	t.Cleanup(l.Close)
	return l, c, clk
}

func TestOneLinePerKeyPerInterval(t *testing.T) {
	l, c, clk := newTest(t, Options{Interval: 10 * time.Second})
	for i := range 50 {
		l.Log(slog.LevelInfo, "10.0.0.1", "connection failed", "n", i)
	}
	l.Log(slog.LevelInfo, "10.0.0.2", "connection failed", "n", 100)
	if got := len(c.lines("connection failed")); got != 2 {
		t.Fatalf("%d lines for 51 events from 2 keys, want 2 (one per key)", got)
	}
	l.Flush()
	rep := c.lines(SuppressedMsg)
	if len(rep) != 1 {
		t.Fatalf("%d reports, want 1 (the key that was held back): %v", len(rep), rep)
	}
	if rep[0]["count"] != int64(49) || rep[0]["first"] != "connection failed" || rep[0]["n"] != int64(1) {
		t.Fatalf("report %v, want count 49, first line's message and attributes (n=1)", rep[0])
	}
	clk.add(10 * time.Second)
	l.Log(slog.LevelInfo, "10.0.0.1", "connection failed", "n", 200)
	if got := len(c.lines("connection failed")); got != 3 {
		t.Fatalf("%d lines after the interval, want 3", got)
	}
	l.Flush()
	if got := len(c.lines(SuppressedMsg)); got != 1 {
		t.Fatalf("a flush with nothing held back reported: %d reports", got)
	}
}

func TestOverallBoundAndManyKeys(t *testing.T) {
	l, c, clk := newTest(t, Options{Rate: 1, Burst: 5, MaxSummary: 3, MaxKeys: 100})
	for i := range 1000 {
		l.Log(slog.LevelInfo, net.IPv4(10, 0, byte(i>>8), byte(i)).String(), "refused")
	}
	if got := len(c.lines("refused")); got != 5 {
		t.Fatalf("%d lines from 1000 keys, want the burst of 5", got)
	}
	l.Flush()
	rep := c.lines(SuppressedMsg)
	if len(rep) != 4 {
		t.Fatalf("%d reports, want 3 keys one by one and one line for the rest", len(rep))
	}
	total := int64(0)
	for _, r := range rep {
		total += r["count"].(int64)
	}
	if total != 995 {
		t.Fatalf("reports count %d lines, want 995 (every line held back, forgotten keys included)", total)
	}
	clk.add(2 * time.Second)
	l.Log(slog.LevelInfo, "10.9.9.9", "refused")
	if got := len(c.lines("refused")); got != 6 {
		t.Fatalf("the bucket did not refill: %d lines", got)
	}
}

func TestReportTimerAndClose(t *testing.T) {
	c := &capture{}
	clk := &clock{t: time.Unix(1_000_000, 0)} // stands still: only the timer reports
	l := New(slog.New(c), Options{Interval: 20 * time.Millisecond, Now: clk.now})
	l.Log(slog.LevelWarn, "k", "first")
	l.Log(slog.LevelWarn, "k", "second")
	deadline := time.Now().Add(5 * time.Second)
	for len(c.lines(SuppressedMsg)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no report after the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Log(slog.LevelWarn, "k", "third")
	l.Close()
	if rep := c.lines(SuppressedMsg); len(rep) != 2 || rep[1]["first"] != "third" {
		t.Fatalf("Close did not report what was held back: %v", rep)
	}
	l.Log(slog.LevelWarn, "k", "fourth")
	l.mu.Lock()
	timer := l.mu.timer
	l.mu.Unlock()
	if timer != nil {
		t.Fatal("a report was scheduled after Close")
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 5}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 5}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, "/tmp/x"},
		{nil, ""},
	} {
		if got := AddrKey(tc.addr); got != tc.want {
			t.Errorf("AddrKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestLongValuesCut: a value a client chose (a 64 KiB filter, an error
// quoting it) is cut in the line and in what is held back; the key
// itself is held as a hash, whatever its length.
func TestLongValuesCut(t *testing.T) {
	l, c, _ := newTest(t, Options{})
	long := strings.Repeat("f", 65535)
	for range 2 {
		l.Log(slog.LevelInfo, strings.Repeat("k", 65535), "subscription refused", "filter", long, "err", errors.New(long))
	}
	l.Flush()
	for _, m := range append(c.lines("subscription refused"), c.lines(SuppressedMsg)...) {
		for _, k := range []string{"filter", "err"} {
			v, _ := m[k].(string)
			if len(v) > MaxValueLen+32 || !strings.HasSuffix(v, "...(65535 bytes)") {
				t.Fatalf("%s of %d bytes kept: %.40q", k, len(v), v)
			}
		}
	}
	if n := len(c.lines(SuppressedMsg)); n != 1 {
		t.Fatalf("%d reports", n)
	}
}
