package cluster

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/petrel-mqtt/petrel/internal/topic"
)

func TestTopicSubject(t *testing.T) {
	tests := []struct{ topic, subject string }{
		{"a/b/c", "m.a.b.c"},
		{"spBv1.0/plant 1/x", "m.spBv1=2E0.plant=201.x"},
		{"a//b", "m.a.=.b"},
		{"/", "m.=.="},
		{"a/", "m.a.="},
		{"*/>", "m.=2A.=3E"},
		{"ü", "m.=C3=BC"},
		{"a=b", "m.a=3Db"},
		{"tab\there", "m.tab=09here"},
		{"$SYS/x", "d.=24SYS.x"},
		{"$", "d.=24"},
		{"x$/y", "m.x=24.y"},
	}
	for _, tt := range tests {
		got, err := TopicSubject(tt.topic)
		if err != nil || got != tt.subject {
			t.Errorf("TopicSubject(%q) = %q, %v; want %q", tt.topic, got, err, tt.subject)
			continue
		}
		if !server.IsValidLiteralSubject(got) {
			t.Errorf("TopicSubject(%q) = %q: not a valid NATS literal subject", tt.topic, got)
		}
		back, err := SubjectTopic(got)
		if err != nil || back != tt.topic {
			t.Errorf("SubjectTopic(%q) = %q, %v; want %q", got, back, err, tt.topic)
		}
	}
}

// TestSubjectTopicRefusesForeign checks that only subjects TopicSubject
// makes decode, so that no two subjects give one topic.
func TestSubjectTopicRefusesForeign(t *testing.T) {
	for _, s := range []string{
		"m",       // no root separator
		"m.a..b",  // empty token
		"m.=41",   // a plain byte escaped
		"m.=2",    // short escape
		"m.=2a",   // lower-case hex
		"m.a b",   // raw space
		"d.a",     // '$' root for a topic without '$'
		"m.=24x",  // a '$' topic under the live root
		"m.a.=.=", // fine: a//  ... checked below as valid
	} {
		_, err := SubjectTopic(s)
		if s == "m.a.=.=" {
			if err != nil {
				t.Errorf("SubjectTopic(%q): %v", s, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadSubject) {
			t.Errorf("SubjectTopic(%q) error %v, want ErrBadSubject", s, err)
		}
	}
}

func TestTopicTooLong(t *testing.T) {
	longest := strings.Repeat(" ", maxTopicBytes)
	s, err := TopicSubject(longest)
	if err != nil {
		t.Fatalf("the longest legal topic: %v", err)
	}
	// Every byte escaped, plus the root: it must fit in a protocol line
	// with room for the line's other arguments.
	if len(s) != 2+3*maxTopicBytes || len(s)+1024 > maxControlLine {
		t.Fatalf("subject of the longest topic is %d bytes, max_control_line %d", len(s), maxControlLine)
	}
	if _, err := TopicSubject(longest + " "); !errors.Is(err, ErrTopicTooLong) {
		t.Fatalf("65536-byte topic: %v, want ErrTopicTooLong", err)
	}
	if _, err := FilterSubjects(longest + "/#"); !errors.Is(err, ErrTopicTooLong) {
		t.Fatalf("65537-byte filter: %v, want ErrTopicTooLong", err)
	}
}

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"m.a.b"}},
		{"a/+/c", []string{"m.a.*.c"}},
		{"+", []string{"m.*"}},
		{"#", []string{"m.>"}},
		{"a/#", []string{"m.a", "m.a.>"}},
		{"+/#", []string{"m.*", "m.*.>"}},
		{"a//#", []string{"m.a.=", "m.a.=.>"}},
		{"$SYS/#", []string{"d.=24SYS", "d.=24SYS.>"}},
		{"$SYS/+", []string{"d.=24SYS.*"}},
		{"a b/*", []string{"m.a=20b.=2A"}},
	}
	for _, tt := range tests {
		got, err := FilterSubjects(tt.filter)
		if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("FilterSubjects(%q) = %q, %v; want %q", tt.filter, got, err, tt.want)
		}
		for _, s := range got {
			if !server.IsValidSubject(s) {
				t.Errorf("FilterSubjects(%q): %q is not a valid NATS subject", tt.filter, s)
			}
		}
	}
}

// TestFilterMatchAgrees checks that a topic matches a filter iff its
// subject matches one of the filter's subjects, on cases that the $ rule
// [MQTT-4.7.2-1] and the parent rule of '#' [MQTT-4.7.1-2] decide.
func TestFilterMatchAgrees(t *testing.T) {
	cases := []struct{ filter, name string }{
		{"#", "$SYS/x"}, {"+/x", "$SYS/x"}, {"$SYS/#", "$SYS/x"}, {"$SYS/#", "$SYS"},
		{"a/#", "a"}, {"a/#", "a/"}, {"a/#", "ab"}, {"a/+", "a"}, {"a/+", "a/"},
		{"+", ""}, {"+/+", "/"}, {"#", "/"}, {"a/*", "a/x"}, {"a/*", "a/*"}, {"a/>", "a/b/c"},
	}
	for _, c := range cases {
		checkAgreement(t, c.filter, c.name)
	}
}

// checkAgreement fails when the subject codec and topic.Match disagree on
// whether name matches filter.
func checkAgreement(t *testing.T, filter, name string) {
	t.Helper()
	subs, err := FilterSubjects(filter)
	if err != nil {
		t.Fatalf("FilterSubjects(%q): %v", filter, err)
	}
	subj, err := TopicSubject(name)
	if err != nil {
		t.Fatalf("TopicSubject(%q): %v", name, err)
	}
	n := 0
	for _, s := range subs {
		if !server.IsValidSubject(s) {
			t.Fatalf("FilterSubjects(%q): %q invalid", filter, s)
		}
		if server.SubjectMatchesFilter(subj, s) {
			n++
		}
	}
	if n > 1 {
		t.Fatalf("topic %q matches %d subjects of filter %q: they must not overlap", name, n, filter)
	}
	if want := topic.Match(filter, name); want != (n == 1) {
		t.Fatalf("filter %q topic %q: topic.Match %v, subjects %q match %v", filter, name, want, subs, n == 1)
	}
}

func FuzzSubjectRoundTrip(f *testing.F) {
	for _, s := range []string{"a/b", "spBv1.0/plant 1/x", "a//b", "/", "*/>", "ü", "$SYS/x", "=", "=3D", "a.b", " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if topic.ValidateName(name) != nil {
			return
		}
		s, err := TopicSubject(name)
		if err != nil {
			t.Fatalf("TopicSubject(%q): %v", name, err)
		}
		if !server.IsValidLiteralSubject(s) || strings.ContainsAny(s, " \t\r\n") {
			t.Fatalf("TopicSubject(%q) = %q: not a valid literal subject", name, s)
		}
		back, err := SubjectTopic(s)
		if err != nil || back != name {
			t.Fatalf("SubjectTopic(TopicSubject(%q)) = %q, %v", name, back, err)
		}
		r, err := retainedSubject(name)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := retainedTopic(r); err != nil || back != name || !server.IsValidLiteralSubject(r) {
			t.Fatalf("retained subject %q of %q gives back %q, %v", r, name, back, err)
		}
	})
}

func FuzzSubjectDecode(f *testing.F) {
	for _, s := range []string{"m.a", "m.=.=", "d.=24x", "m.=C3=BC", "m.=2", "r.x", "m.=2F", "m.a=2Fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := SubjectTopic(s)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same subject: one subject
		// per topic.
		if again, err := TopicSubject(name); err != nil || again != s {
			t.Fatalf("SubjectTopic(%q) = %q, which encodes to %q, %v", s, name, again, err)
		}
	})
}

func FuzzFilterMatch(f *testing.F) {
	seeds := [][2]string{{"#", "$SYS/x"}, {"a/#", "a"}, {"a/+", "a/"}, {"+/+", "/"}, {"a/*", "a/x"}, {"$x/+", "$x/y"}}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		if topic.ValidateFilter(filter) != nil || topic.ValidateName(name) != nil || !utf8.ValidString(filter+name) {
			return
		}
		checkAgreement(t, filter, name)
	})
}
