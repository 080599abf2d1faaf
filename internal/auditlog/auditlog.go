// Package auditlog writes the audit trail (log.audit_file): every log
// line marked as an audit event (ratelog.AuditKey: authentications,
// refusals, takeovers, reloads) is also written, as one JSON object per
// line, to a file opened for appending and reopened on demand (SIGHUP,
// after log rotation moved it). Its write rate is bounded: past Rate
// lines a second (Burst at once) lines are counted and reported in one
// line per interval instead.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
)

// Defaults of the write-rate bound.
const (
	DefaultRate     = 200  // lines a second
	DefaultBurst    = 2000 // lines at once
	DefaultInterval = 10 * time.Second
)

// DroppedMsg is the message of the line that reports lines dropped by the
// write-rate bound.
const DroppedMsg = "audit lines dropped"

// File is the audit file. Its methods are safe for concurrent use.
type File struct {
	path     string
	limit    *rate.Limiter
	interval time.Duration
	json     slog.Handler // writes to the File (Write)

	mu struct {
		sync.Mutex
		f       *os.File
		dropped int
		timer   *time.Timer // a drop report is due; nil when none
		closed  bool
	}
}

// Open opens (creating it, mode 0600) the file at path for appending.
func Open(path string) (*File, error) {
	a := &File{path: path, limit: rate.NewLimiter(DefaultRate, DefaultBurst), interval: DefaultInterval}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	a.mu.f = f
	a.json = slog.NewJSONHandler(a, &slog.HandlerOptions{Level: slog.LevelDebug})
	return a, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log.audit_file: %w", err)
	}
	return f, nil
}

// Path returns the file's path.
func (a *File) Path() string { return a.path }

// Reopen opens the path again and writes to the new file from now on
// (log rotation: the old file was moved away). On error the old file is
// kept.
func (a *File) Reopen() error {
	f, err := openAppend(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.mu.f
	a.mu.f = f
	a.mu.Unlock()
	return old.Close()
}

// Write writes one line (the JSON handler calls it once per record).
func (a *File) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return 0, os.ErrClosed
	}
	return a.mu.f.Write(p)
}

// Close reports lines dropped and closes the file.
func (a *File) Close() error {
	a.report()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.closed {
		return nil
	}
	a.mu.closed = true
	if a.mu.timer != nil {
		a.mu.timer.Stop()
		a.mu.timer = nil
	}
	return a.mu.f.Close()
}

// handle writes r to the file unless the write-rate bound drops it.
func (a *File) handle(ctx context.Context, h slog.Handler, r slog.Record) error {
	if a.limit.Allow() {
		return h.Handle(ctx, r)
	}
	a.mu.Lock()
	a.mu.dropped++
	if a.mu.timer == nil && !a.mu.closed {
		a.mu.timer = time.AfterFunc(a.interval, a.report)
	}
	a.mu.Unlock()
	return nil
}

// report writes the count of dropped lines, if any, to the file.
func (a *File) report() {
	a.mu.Lock()
	n := a.mu.dropped
	a.mu.dropped = 0
	a.mu.timer = nil
	a.mu.Unlock()
	if n == 0 {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, DroppedMsg, 0)
	r.AddAttrs(slog.String(ratelog.AuditKey, "audit.dropped"), slog.Int("count", n), slog.String("window", a.interval.String()))
	_ = a.json.Handle(context.Background(), r) // only fails when the file is closed or the disk full: nothing to tell
}

// Handler returns a slog.Handler writing to main as it would, and the
// records marked with ratelog.AuditKey (at INFO or above, whatever main's
// level) to a as well; a nil a returns main.
func Handler(main slog.Handler, a *File) slog.Handler {
	if a == nil {
		return main
	}
	return &tee{main: main, audit: a.json, file: a}
}

// tee is Handler's slog.Handler.
type tee struct {
	main, audit slog.Handler
	file        *File
	marked      bool // the attributes added by WithAttrs mark an audit event
}

func (t *tee) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || t.main.Enabled(ctx, l)
}

func (t *tee) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if t.main.Enabled(ctx, r.Level) {
		errs = append(errs, t.main.Handle(ctx, r))
	}
	if r.Level >= slog.LevelInfo && (t.marked || audited(r)) {
		errs = append(errs, t.file.handle(ctx, t.audit, r))
	}
	return errors.Join(errs...)
}

func audited(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == ratelog.AuditKey
		return !found
	})
	return found
}

func (t *tee) WithAttrs(as []slog.Attr) slog.Handler {
	n := *t
	n.main, n.audit = t.main.WithAttrs(as), t.audit.WithAttrs(as)
	for _, a := range as {
		n.marked = n.marked || a.Key == ratelog.AuditKey
	}
	return &n
}

func (t *tee) WithGroup(name string) slog.Handler {
	n := *t
	n.main, n.audit = t.main.WithGroup(name), t.audit.WithGroup(name)
	return &n
}
