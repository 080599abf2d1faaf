// Package ratelog writes log lines that a client can cause, at a bounded
// rate: at most one line per key (a remote address, a client) per
// interval, and at most a few lines a second in all. What it holds back it
// counts, and reports once per interval as one line per key ("suppressed
// similar lines", with the count and the first suppressed line's
// attributes), so a flood from one address costs the log two lines every
// interval, and a flood from many addresses a bounded number more.
//
// The package knows nothing of MQTT; the broker, the listeners and the
// authenticator each keep a Limiter.
package ratelog

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults of Options.
const (
	DefaultInterval   = 10 * time.Second
	DefaultMaxKeys    = 4096
	DefaultRate       = 20  // lines a second in all, beyond the burst
	DefaultBurst      = 100 // lines at once in all
	DefaultMaxSummary = 20  // keys reported one by one per interval
)

// MaxValueLen bounds a string (or error) value of a line: a client
// chooses its filters, topics and client ids, up to 64 KiB each; longer
// values are cut and marked with their length.
const MaxValueLen = 256

// SuppressedMsg is the message of the lines that report suppressed ones.
const SuppressedMsg = "suppressed similar lines"

// Options tune a Limiter; zero fields take the defaults above.
type Options struct {
	// Interval: one line per key per Interval, and the reports of what was
	// held back once per Interval.
	Interval time.Duration
	// MaxKeys bounds the keys remembered; the least recently seen are
	// forgotten beyond (their held-back count moves to the overall line).
	MaxKeys int
	// Rate and Burst bound the lines written in all (a token bucket), the
	// reports excepted.
	Rate  float64
	Burst int
	// MaxSummary bounds the keys reported one by one per interval; the
	// others are reported together in one line.
	MaxSummary int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// entry is what a Limiter remembers of one key.
type entry struct {
	last    time.Time // when its last line was written
	pending int       // lines held back since the last report
	level   slog.Level
	msg     string // the first held-back line
	attrs   []any
	queued  bool // in Limiter.mu.pending
}

// Limiter writes rate-limited lines to a logger. Its methods are safe for
// concurrent use. Close reports what is held back and stops its timer.
type Limiter struct {
	log  *slog.Logger
	opts Options
	seed maphash.Seed

	mu struct {
		sync.Mutex
		// keys are hashed: a key a client chooses (its client id) costs
		// 8 bytes however long it is.
		keys    *simplelru.LRU[uint64, *entry]
		pending []uint64 // keys with lines held back, in order
		// lost: lines held back whose key was forgotten, or beyond the
		// keys the entries can hold; lostKeys: how many such keys.
		lost, lostKeys int
		tokens         float64 // the overall bucket
		filled         time.Time
		timer          *time.Timer // a report is due; nil when none
		closed         bool
	}
}

// New returns a Limiter writing to log.
func New(log *slog.Logger, o Options) *Limiter {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.MaxSummary <= 0 {
		o.MaxSummary = DefaultMaxSummary
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{log: log, opts: o, seed: maphash.MakeSeed()}
	l.mu.tokens = float64(o.Burst)
	l.mu.keys, _ = simplelru.NewLRU[uint64, *entry](o.MaxKeys, l.forgotten) // only a size <= 0 fails
	return l
}

// forgotten is the LRU's eviction callback (under Limiter.mu): what the
// entry held back is counted in the overall line.
func (l *Limiter) forgotten(_ uint64, e *entry) {
	if e.pending > 0 {
		l.mu.lost += e.pending
		l.mu.lostKeys++
	}
}

// Enabled reports whether the logger writes lines of level at all; a
// caller may skip building the attributes when it does not.
func (l *Limiter) Enabled(level slog.Level) bool {
	return l != nil && l.log.Enabled(context.Background(), level)
}

// Log writes msg with args (slog key-value pairs) unless key had a line
// within the interval or the overall bound is reached; then the line is
// counted and reported with the others of key at the end of the interval.
// A nil Limiter writes nothing.
func (l *Limiter) Log(level slog.Level, key, msg string, args ...any) {
	if !l.Enabled(level) {
		return
	}
	args = clip(args)
	h := maphash.String(l.seed, key)
	now := l.opts.Now()
	l.mu.Lock()
	e, ok := l.mu.keys.Get(h)
	if !ok {
		e = &entry{}
		l.mu.keys.Add(h, e)
	}
	if (e.last.IsZero() || now.Sub(e.last) >= l.opts.Interval) && l.takeTokenLocked(now) {
		e.last = now
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	if l.mu.closed {
		l.mu.Unlock() // shutting down: nothing will report it
		return
	}
	e.pending++
	if e.pending == 1 {
		e.level, e.msg, e.attrs = level, msg, args
	}
	if !e.queued {
		e.queued = true
		l.mu.pending = append(l.mu.pending, h)
	}
	if l.mu.timer == nil {
		l.mu.timer = time.AfterFunc(l.opts.Interval, l.Flush)
	}
	l.mu.Unlock()
}

// takeTokenLocked takes one line from the overall bucket.
func (l *Limiter) takeTokenLocked(now time.Time) bool {
	if !l.mu.filled.IsZero() {
		l.mu.tokens = min(float64(l.opts.Burst), l.mu.tokens+now.Sub(l.mu.filled).Seconds()*l.opts.Rate)
	}
	l.mu.filled = now
	if l.mu.tokens < 1 {
		return false
	}
	l.mu.tokens--
	return true
}

// report is one line of Flush.
type report struct {
	level slog.Level
	msg   string
	count int
	attrs []any
}

// Flush reports the lines held back since the last report, now. It runs
// on a timer once per interval while lines are held back.
func (l *Limiter) Flush() {
	l.mu.Lock()
	if l.mu.timer != nil {
		l.mu.timer.Stop()
		l.mu.timer = nil
	}
	var out []report
	lost, lostKeys := l.mu.lost, l.mu.lostKeys
	for _, k := range l.mu.pending {
		e, ok := l.mu.keys.Peek(k)
		if !ok || e.pending == 0 {
			continue
		}
		if len(out) < l.opts.MaxSummary {
			out = append(out, report{level: e.level, msg: e.msg, count: e.pending, attrs: e.attrs})
		} else {
			lost += e.pending
			lostKeys++
		}
		e.pending, e.msg, e.attrs, e.queued = 0, "", nil, false
	}
	l.mu.pending = l.mu.pending[:0]
	l.mu.lost, l.mu.lostKeys = 0, 0
	l.mu.Unlock()
	window := l.opts.Interval.String()
	for _, r := range out {
		args := append([]any{"count", r.count, "window", window, "first", r.msg}, r.attrs...)
		l.log.Log(context.Background(), r.level, SuppressedMsg, args...)
	}
	if lost > 0 {
		l.log.Warn(SuppressedMsg, "count", lost, "window", window, "keys", lostKeys)
	}
}

// Close reports what is held back and stops the reports: lines held back
// later (while the owner shuts down) are dropped uncounted.
func (l *Limiter) Close() {
	if l == nil {
		return
	}
	l.Flush()
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
}

// clip returns args with every string and error value longer than
// MaxValueLen cut (a copy; args itself is the caller's).
func clip(args []any) []any {
	var out []any
	for i, a := range args {
		var s string
		switch v := a.(type) {
		case string:
			s = v
		case error:
			s = v.Error()
			if len(s) <= MaxValueLen {
				continue
			}
		default:
			continue
		}
		if len(s) <= MaxValueLen {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = fmt.Sprintf("%s...(%d bytes)", s[:MaxValueLen], len(s))
	}
	if out == nil {
		return args
	}
	return out
}

// AddrKey is the key of a remote address: its IP for IPv4, its /64 for
// IPv6 (one host usually has a whole /64), the address's string otherwise.
func AddrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	var ip netip.Addr
	switch t := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(t.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(t.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = ap.Addr()
	}
	return IPKey(ip)
}

// IPKey is AddrKey of an IP address: itself for IPv4, its /64 for IPv6.
func IPKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// AuditKey is the attribute that marks a line as an audit event; its value
// names the event ("connect", "auth.failure", "subscribe.refused", ...).
// petrel serve copies the lines that carry it to the audit file.
const AuditKey = "audit"
