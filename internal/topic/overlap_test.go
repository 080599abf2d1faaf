package topic

import (
	"strings"
	"testing"
)

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"A/read/secret/#", "A/read/#", true},
		{"A/read/secret/#", "A/read/+/x", true},
		{"A/read/secret/#", "A/read/other/x", false},
		{"A/read/secret", "A/read/secret/#", true}, // '#' matches the parent [MQTT-4.7.1-2]
		{"A/x", "A/y", false},
		{"#", "$SYS/x", false},   // [MQTT-4.7.2-1]
		{"+/x", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"+/#", "$SYS", false},   // [MQTT-4.7.2-1]
		{"$SYS/#", "$SYS/+", true},
		{"A/+", "+/B", true},
		{"A", "A/+", false},
		{"A", "A/#", true},
		{"A/+/#", "A", false},
		{"+/+", "test/nosubscribe", true},
		{"+/+", "test/nosubscribe/x", false},
		{"#", "test/nosubscribe", true},
		{"test/#", "test/nosubscribe", true},
		{"+", "+/+", false},
		{"/+", "+/", true},
		{"#", "#", true},
		{"+", "/#", false}, // only the empty name, which is no topic [MQTT-4.7.3-1]
		{"+/+", "/#", true},
	}
	for _, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlaps(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		allow, filter string
		want          bool
	}{
		{"A/read/#", "A/read/#", true},
		{"A/read/#", "A/read", true}, // "#" matches the parent level
		{"A/read/#", "A/read/+/gas", true},
		{"A/read/#", "A/read/00:11/gas", true},
		{"A/read/#", "A/#", false},
		{"A/read/#", "#", false},
		{"A/read/#", "+/read/#", false},
		{"A/read/#", "+/read/x/gas", false},
		{"A/read/#", "A/+/x", false},
		{"A/read/#", "A/alert/x", false},
		{"A/read/#", "B/read/x", false},
		{"A/read/#", "A/reads/x", false},
		{"A/read/+", "A/read/x", true},
		{"A/read/+", "A/read/+", true},
		{"A/read/+", "A/read/#", false}, // "#" also matches A/read and A/read/x/y
		{"A/read/+", "A/read/x/y", false},
		{"A/read/+", "A/read", false},
		{"A/+/x", "A/+/x", true},
		{"A/+/x", "A/b/x", true},
		{"A/+/x", "A/+/#", false},
		{"#", "#", true},
		{"#", "A/b", true},
		{"#", "$SYS/#", false},   // "#" never matches $-topics [MQTT-4.7.2-1]
		{"+/#", "$SYS/x", false}, // nor "+"
		{"$SYS/#", "$SYS/broker/x", true},
		{"A", "A", true},
		{"A", "A/b", false},
		{"A/b", "A", false},
		{"A//b", "A/+/b", false},
		{"A/+/b", "A//b", true},
		{"A/#", "A//#", true},
		{"test/nosubscribe", "test/nosubscribe", true},
		{"test/nosubscribe", "+/+", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.allow, tt.filter); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.allow, tt.filter, got, tt.want)
		}
	}
}

// sampleFilters and sampleNames drive the brute-force checks below.
var (
	sampleFilters = []string{"#", "+", "+/+", "+/#", "A", "A/#", "A/+", "A/+/#", "A/b", "A/b/#", "A/+/c", "+/b/#",
		"A/b/c", "$SYS/#", "$SYS/+", "A//#", "B/#", "/+", "+/", "$SYS", "+/+/+"}
	sampleNames = []string{"A", "B", "A/b", "A/c", "A/b/c", "A/x/c", "A/b/c/d", "B/b/c", "x/b", "$SYS", "$SYS/a",
		"$SYS/a/b", "A//c", "A/", "/A", "/", "x/y/z"}
)

// TestCoversAgreesWithMatch checks Covers against brute force: when Covers
// says yes, every sample topic the filter matches is matched by allow.
func TestCoversAgreesWithMatch(t *testing.T) {
	for _, a := range sampleFilters {
		for _, f := range sampleFilters {
			if !Covers(a, f) {
				continue
			}
			for _, n := range sampleNames {
				if Match(f, n) && !Match(a, n) {
					t.Errorf("Covers(%q, %q) but %q matches only the filter", a, f, n)
				}
			}
		}
	}
}

// TestOverlapsAgreesWithMatch checks Overlaps against brute force: a
// sample topic matched by both filters means they overlap, and when they
// overlap the witness topic matches both.
func TestOverlapsAgreesWithMatch(t *testing.T) {
	for _, a := range sampleFilters {
		for _, b := range sampleFilters {
			checkOverlap(t, a, b)
			for _, n := range sampleNames {
				if Match(a, n) && Match(b, n) && !Overlaps(a, b) {
					t.Errorf("%q matches %q and %q, but Overlaps says no", n, a, b)
				}
			}
		}
	}
}

// checkOverlap checks that Overlaps(a, b) is symmetric and, when true,
// that a topic matching both exists (overlapWitness).
func checkOverlap(t *testing.T, a, b string) {
	t.Helper()
	got := Overlaps(a, b)
	if got != Overlaps(b, a) {
		t.Fatalf("Overlaps(%q, %q) = %v but Overlaps(%q, %q) = %v", a, b, got, b, a, !got)
	}
	if !got {
		return
	}
	w := overlapWitness(a, b)
	if ValidateName(w) != nil || !Match(a, w) || !Match(b, w) {
		t.Fatalf("Overlaps(%q, %q), but the witness %q does not match both", a, b, w)
	}
}

// overlapWitness builds a topic name that both filters match, assuming
// they overlap: level by level the literal one of the two, "x" for two
// '+', and from a '#' on the other filter's remaining levels, with "x" for
// its wildcards.
func overlapWitness(a, b string) string {
	var out []string
	fill := func(rest string) string {
		var ls []string
		for _, l := range strings.Split(rest, "/") {
			switch l {
			case "+", "#":
				ls = append(ls, "x")
			default:
				ls = append(ls, l)
			}
		}
		return strings.Join(append(out, ls...), "/")
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		var w string
		switch {
		case al == "#":
			w = fill(b)
		case bl == "#":
			w = fill(a)
		}
		if al == "#" || bl == "#" {
			return w
		}
		l := al
		if l == "+" {
			l = bl
		}
		if l == "+" {
			l = "x"
		}
		out = append(out, l)
		if !amore || !bmore {
			// The shorter ends here; the longer's rest is '#' (matching
			// the parent) when they overlap.
			return strings.Join(out, "/")
		}
		a, b = arest, brest
	}
}

// FuzzOverlaps checks Overlaps and Covers against Match: a name matched
// by both filters means they overlap; overlapping filters have a witness
// topic matched by both; a filter covered by another matches no name the
// other does not.
func FuzzOverlaps(f *testing.F) {
	for _, a := range []string{"#", "+/+", "A/+", "$SYS/#", "A/#", "test/nosubscribe", "/+"} {
		for _, b := range []string{"+/B", "A", "$SYS/x", "test/#", "+/"} {
			f.Add(a, b, "A/B")
		}
	}
	f.Fuzz(func(t *testing.T, a, b, name string) {
		ov, cov := Overlaps(a, b), Covers(a, b) // must not panic on any input
		if ValidateFilter(a) != nil || ValidateFilter(b) != nil {
			return
		}
		checkOverlap(t, a, b)
		if ValidateName(name) != nil {
			return
		}
		if Match(a, name) && Match(b, name) && !ov {
			t.Fatalf("%q matches %q and %q, but Overlaps says no", name, a, b)
		}
		if cov && Match(b, name) && !Match(a, name) {
			t.Fatalf("Covers(%q, %q), but %q matches only %q", a, b, name, b)
		}
		if cov && !ov {
			t.Fatalf("Covers(%q, %q) without Overlaps", a, b)
		}
	})
}

func TestMatchAny(t *testing.T) {
	deny := []string{"test/nosubscribe", "secret/#"}
	for name, want := range map[string]bool{"test/nosubscribe": true, "secret": true, "secret/x": true, "test/x": false, "$SYS/x": false} {
		if got := MatchAny(deny, name); got != want {
			t.Errorf("MatchAny(%q, %q) = %v, want %v", deny, name, got, want)
		}
	}
	if MatchAny(nil, "a") {
		t.Error("MatchAny(nil) matched")
	}
}
