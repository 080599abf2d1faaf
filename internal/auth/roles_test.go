package auth

import (
	"errors"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/topic"
)

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
	}
	for _, tt := range tests {
		if got := Covers(tt.allow, tt.filter); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.allow, tt.filter, got, tt.want)
		}
	}
}

// TestCoversAgreesWithMatch checks Covers against brute force: when Covers
// says yes, every sample topic the filter matches is matched by allow; when
// some sample matched by the filter is not matched by allow, Covers says no.
func TestCoversAgreesWithMatch(t *testing.T) {
	filters := []string{"#", "+", "+/+", "+/#", "A", "A/#", "A/+", "A/+/#", "A/b", "A/b/#", "A/+/c", "+/b/#", "A/b/c", "$SYS/#", "$SYS/+", "A//#", "B/#"}
	names := []string{"A", "B", "A/b", "A/c", "A/b/c", "A/x/c", "A/b/c/d", "B/b/c", "x/b", "$SYS", "$SYS/a", "$SYS/a/b", "A//c", "A/", "/A", ""}
	for _, a := range filters {
		for _, f := range filters {
			cov := Covers(a, f)
			for _, n := range names {
				if n == "" {
					continue
				}
				if topic.Match(f, n) && !topic.Match(a, n) && cov {
					t.Errorf("Covers(%q, %q) but %q matches only the filter", a, f, n)
				}
			}
		}
	}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"A/read/secret/#", "A/read/#", true},
		{"A/read/secret/#", "A/read/+/x", true},
		{"A/read/secret/#", "A/read/other/x", false},
		{"A/read/secret", "A/read/secret/#", true},
		{"A/x", "A/y", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"A/+", "+/B", true},
		{"A", "A/+", false},
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

func testRoles() map[string]Role {
	m := map[string]Role{}
	for _, r := range append(DefaultRoles(),
		Role{Name: "OWN", Activity: ActivityBoth, MaxQoS: 2, Retain: true, Topics: []string{"devices/{clientId}/#", "users/{username}/#"}},
		Role{Name: "READ_NOT_SECRET", Activity: ActivitySubscribe, MaxQoS: 2, Topics: []string{"{tenantId}/read/#"}, Deny: []string{"{tenantId}/read/secret/#"}},
		Role{Name: "RETAINER", Activity: ActivityPublish, MaxQoS: 0, Retain: true, Topics: []string{"{tenantId}/status/#"}},
	) {
		m[r.Name] = r
	}
	return m
}

func TestCompileRefusesUnsafeValues(t *testing.T) {
	roles := testRoles()
	tests := []struct {
		name                 string
		roles                []string
		tenant, client, user string
		want                 error
	}{
		{"ok", []string{"BUBBLE_UP_READ_CONSUMER"}, "A", "c1", "", nil},
		{"empty tenant", []string{"BUBBLE_UP_READ_CONSUMER"}, "", "c1", "", errUnsafeTenant},
		{"tenant with #", []string{"BUBBLE_UP_READ_CONSUMER"}, "A/#", "c1", "", errUnsafeTenant},
		{"tenant +", []string{"BUBBLE_UP_READ_CONSUMER"}, "A+", "c1", "", errUnsafeTenant},
		{"tenant NUL", []string{"BUBBLE_UP_READ_CONSUMER"}, "A\x00", "c1", "", errUnsafeTenant},
		{"tenant slash", []string{"BUBBLE_UP_READ_CONSUMER"}, "A/B", "c1", "", errUnsafeTenant},
		{"client id with #", []string{"OWN"}, "A", "#", "u", errUnsafeClientID},
		{"client id with /", []string{"OWN"}, "A", "x/y", "u", errUnsafeClientID},
		{"client id unused", []string{"BUBBLE_UP_READ_CONSUMER"}, "A", "x/#", "", nil},
		{"empty username used", []string{"OWN"}, "A", "c", "", errUnsafeUsername},
		{"unknown role ignored", []string{"NOPE"}, "A", "c", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(roles, tt.roles, tt.tenant, tt.client, tt.user)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("compile: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	roles := testRoles()
	g, err := compile(roles, []string{"BUBBLE_UP_READ_CONSUMER", "BUBBLE_UP_ALARM_CONSUMER", "OWN", "RETAINER"}, "A", "dev1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	subs := []struct {
		filter string
		want   int8
	}{
		{"A/read/#", 1},
		{"A/read/+/gas", 1},
		{"A/alert/#", 1},
		{"A/#", -1},
		{"#", -1},
		{"+/read/#", -1},
		{"B/read/#", -1},
		{"$share/g/A/read/#", 1},
		{"$share/g/#", -1},
		{"$share/g/B/read/x", -1},
		{"$SYS/#", -1},
		{"devices/dev1/#", 2},
		{"devices/+/#", -1},
		{"devices/dev2/x", -1},
		{"users/alice/x", 2},
		{"A/status/#", -1}, // RETAINER publishes only
		{"A/read/#/x", -1}, // invalid
	}
	for _, s := range subs {
		if got := g.subscribeLimit(s.filter); got != s.want {
			t.Errorf("subscribeLimit(%q) = %d, want %d", s.filter, got, s.want)
		}
	}
	pubs := []struct {
		name         string
		qos, retainQ int8
	}{
		{"A/read/x", -1, -1}, // consumers do not publish
		{"devices/dev1/up", 2, 2},
		{"A/status/x", 0, 0},
		{"B/status/x", -1, -1},
	}
	for _, p := range pubs {
		q, rq := g.publishLimits(p.name)
		if q != p.qos || rq != p.retainQ {
			t.Errorf("publishLimits(%q) = %d,%d want %d,%d", p.name, q, rq, p.qos, p.retainQ)
		}
	}

	d, err := compile(roles, []string{"READ_NOT_SECRET"}, "A", "c", "")
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]int8{"A/read/x": 2, "A/read/#": -1, "A/read/+/k": -1, "A/read/secret": -1, "A/read/public/#": 2} {
		if got := d.subscribeLimit(f); got != want {
			t.Errorf("deny: subscribeLimit(%q) = %d, want %d", f, got, want)
		}
	}
}

func TestValidateRole(t *testing.T) {
	bad := []Role{
		{Name: "", Activity: ActivityBoth, Topics: []string{"a"}},
		{Name: "x", Activity: "read", Topics: []string{"a"}},
		{Name: "x", Activity: ActivityBoth, MaxQoS: 3, Topics: []string{"a"}},
		{Name: "x", Activity: ActivityBoth},
		{Name: "x", Activity: ActivityBoth, Topics: []string{"a/#/b"}},
		{Name: "x", Activity: ActivityBoth, Topics: []string{"{tenant}/a"}},
		{Name: "x", Activity: ActivityBoth, Topics: []string{"$share/g/a"}},
	}
	for _, r := range bad {
		if ValidateRole(r) == nil {
			t.Errorf("ValidateRole(%+v) accepted", r)
		}
	}
	for _, r := range DefaultRoles() {
		if err := ValidateRole(r); err != nil {
			t.Errorf("default role: %v", err)
		}
	}
}
