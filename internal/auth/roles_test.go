package auth

import (
	"errors"
	"slices"
	"testing"
)

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
		if got, deny := g.subscribeDecision(s.filter); got != s.want || deny != nil {
			t.Errorf("subscribeDecision(%q) = %d, %q; want %d, no deny", s.filter, got, deny, s.want)
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
	secret := []string{"A/read/secret/#"}
	for _, tt := range []struct {
		filter string
		want   int8
		deny   []string
	}{
		{"A/read/x", 2, nil},
		{"A/read/public/#", 2, nil},
		// A wildcard sharing topics with a deny filter is granted; the
		// deny filter comes with it, for delivery to filter.
		{"A/read/#", 2, secret},
		{"A/read/+/k", 2, secret},
		{"$share/g/A/read/#", 2, secret},
		// Entirely inside the deny filter: refused.
		{"A/read/secret", -1, nil},
		{"A/read/secret/#", -1, nil},
		{"A/read/secret/+/x", -1, nil},
	} {
		got, deny := d.subscribeDecision(tt.filter)
		if got != tt.want || !slices.Equal(deny, tt.deny) {
			t.Errorf("deny: subscribeDecision(%q) = %d, %q; want %d, %q", tt.filter, got, deny, tt.want, tt.deny)
		}
	}
	for name, want := range map[string]bool{"A/read/x": true, "A/read/secret": false, "A/read/secret/x": false, "B/read/x": false, "A/read": true} {
		if got := d.receivable(name); got != want {
			t.Errorf("receivable(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestPahoInteropACL is the Eclipse Paho interoperability suite's ACL:
// everything but test/nosubscribe. Wildcards over it are granted with the
// deny filter; the topic itself is refused [MQTT-3.9.3-2].
func TestPahoInteropACL(t *testing.T) {
	roles := map[string]Role{"ALL_BUT": {Name: "ALL_BUT", Activity: ActivityBoth, MaxQoS: 2, Retain: true,
		Topics: []string{"#"}, Deny: []string{"test/nosubscribe"}}}
	g, err := compile(roles, []string{"ALL_BUT"}, "t", "c", "")
	if err != nil {
		t.Fatal(err)
	}
	deny := []string{"test/nosubscribe"}
	for _, tt := range []struct {
		filter string
		want   int8
		deny   []string
	}{
		{"#", 2, deny},
		{"+/+", 2, deny},
		{"test/#", 2, deny},
		{"+/nosubscribe", 2, deny},
		{"TopicA/#", 2, nil},
		{"+/+/+", 2, nil},
		{"test/nosubscribe", -1, nil},
		{"$SYS/#", -1, nil}, // "#" covers no $-topic [MQTT-4.7.2-1]
	} {
		got, d := g.subscribeDecision(tt.filter)
		if got != tt.want || !slices.Equal(d, tt.deny) {
			t.Errorf("subscribeDecision(%q) = %d, %q; want %d, %q", tt.filter, got, d, tt.want, tt.deny)
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
