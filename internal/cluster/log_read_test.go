package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// TestReadLog: ReadLog returns, in sequence order and once each, the
// messages after `after` whose topic matches one of the filters, up to
// the log's last sequence when it started, which it returns: single
// filters, wildcards ('+', '#', '#' matching its parent [MQTT-4.7.1-2]),
// '$' topics matched only by filters naming them [MQTT-4.7.2-1], empty
// levels, several filters merged by sequence (overlapping ones
// included), more filters than it merges (one pass over the log), and
// more messages than one batch. fn's error stops it. Each node reads
// the same, whichever replica answers.
func TestReadLog(t *testing.T) {
	ms := startLogged(t, configs(t, 3, 3))
	topics := []string{"a", "a/b", "a/c", "a//b", "a/b/c", "b/b", "$SYS/x", "$SYS/a/b", "x y/z", "/a", "a/"}
	type entry struct {
		seq   uint64
		topic string
	}
	var logged []entry
	var r logRecorder
	for i := range 700 {
		r.log(ms[i%3].Node, qos1(topics[i%len(topics)], payloadf("%d", i)))
	}
	for i, x := range r.wait(t, 60*time.Second, "messages logged") {
		if x.err != nil {
			t.Fatalf("message %d: %v", i, x.err)
		}
		logged = append(logged, entry{x.seq, topics[i%len(topics)]})
	}
	slices.SortFunc(logged, func(a, b entry) int { return int(a.seq) - int(b.seq) })
	first, last := logged[0].seq, logged[len(logged)-1].seq

	many := []string{"a/b", "a/c", "x y/+", "$SYS/x", "b/+", "/+", "a/", "+/b/c", "nothing/here"} // 9 subjects: one pass
	if subs, _ := logFilterSubjects(many); subs != nil {
		t.Fatalf("%d subjects for %d filters: want one pass", len(subs), len(many))
	}
	for _, tt := range []struct {
		name    string
		after   uint64
		filters []string
	}{
		{"one topic", 0, []string{"a/b"}},
		{"plus", 0, []string{"a/+"}},
		{"hash with its parent", 0, []string{"a/#"}},
		{"bare hash, no $ topics", 0, []string{"#"}},
		{"leading plus, no $ topics", 0, []string{"+/b"}},
		{"$ topics by name", 0, []string{"$SYS/#"}},
		{"empty level", 0, []string{"a//b"}},
		{"empty level by plus", 0, []string{"a/+/b"}},
		{"leading empty level", 0, []string{"/a", "+/a"}},
		{"overlapping, merged", 0, []string{"a/b", "a/#", "+/b"}},
		{"disjoint, merged", 0, []string{"x y/z", "$SYS/x", "b/b"}},
		{"after", first + 300, []string{"a/#", "$SYS/+"}},
		{"after the last", last, []string{"#"}},
		{"many filters, one pass", 0, many},
		{"many filters after", first + 500, many},
		{"no match", 0, []string{"c/d"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var want []entry
			for _, e := range logged {
				if e.seq > tt.after && topic.MatchAny(tt.filters, e.topic) {
					want = append(want, e)
				}
			}
			for _, m := range ms {
				var got []entry
				end, err := m.ReadLog(context.Background(), tt.after, tt.filters, func(seq uint64, msg *session.Message) error {
					got = append(got, entry{seq, msg.Topic})
					return nil
				})
				if err != nil {
					t.Fatalf("%s: %v", m.cfg.Node, err)
				}
				if end != last {
					t.Fatalf("%s: last %d, want %d", m.cfg.Node, end, last)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s: read %d messages, want %d:\n got %v\nwant %v", m.cfg.Node, len(got), len(want), head(got), head(want))
				}
			}
		})
	}

	t.Run("up to the last sequence at the start", func(t *testing.T) {
		var got int
		var extra logRecorder
		end, err := ms[0].ReadLog(context.Background(), 0, []string{"a/b"}, func(seq uint64, _ *session.Message) error {
			if got == 0 {
				// Logged while reading: past the end.
				extra.log(ms[1].Node, qos1("a/b", "late"))
				extra.wait(t, 30*time.Second, "a message logged during the read")
			}
			got++
			if seq > last {
				return fmt.Errorf("seq %d after the last %d", seq, last)
			}
			return nil
		})
		if err != nil || end != last {
			t.Fatalf("ReadLog: last %d, %v; want %d", end, err, last)
		}
	})
	t.Run("fn's error stops it, no consumer made", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		_, err := ms[2].ReadLog(context.Background(), 0, []string{"#"}, func(uint64, *session.Message) error {
			calls++
			// While a read is under way the log has the followers'
			// consumers only, one per node.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := ms[0].logJS.Stream(ctx, logStream)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.CachedInfo().State.Consumers; c > len(ms) {
				t.Fatalf("%d consumers on the log during a read, want the %d followers only", c, len(ms))
			}
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("err %v after %d calls; want stop after 1", err, calls)
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		if _, err := ms[0].ReadLog(context.Background(), 0, []string{"a/#/b"}, func(uint64, *session.Message) error { return nil }); err == nil {
			t.Fatal("a/#/b read without an error")
		}
	})
}

// head returns the first entries of a list, for a failure message.
func head[T any](s []T) []T {
	return s[:min(len(s), 12)]
}
