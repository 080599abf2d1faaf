package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		clause string
		name   string
		want   error
	}{
		{"[MQTT-4.7.3-1] non-empty", "", ErrEmpty},
		{"plain", "sport/tennis/player1", nil},
		{"[MQTT-4.7.1-1] single separator", "/", nil},
		{"[MQTT-4.7.1-1] empty levels", "//", nil},
		{"leading separator", "/finance", nil},
		{"trailing separator", "sport/", nil},
		{"[MQTT-4.7.2-1] dollar topic", "$SYS/broker/load", nil},
		{"space is valid", "a b/c", nil},
		{"utf-8", "café/☕", nil},
		{"[MQTT-3.3.2-2] plus", "sport/+", ErrWildcardName},
		{"[MQTT-3.3.2-2] hash", "sport/#", ErrWildcardName},
		{"[MQTT-3.3.2-2] embedded plus", "sport+", ErrWildcardName},
		{"[MQTT-3.3.2-2] embedded hash", "a#b", ErrWildcardName},
		{"[MQTT-1.5.4-2] U+0000", "a\x00b", ErrInvalidName},
		{"max length", strings.Repeat("a", MaxLen), nil},
		{"too long", strings.Repeat("a", MaxLen+1), ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.clause, func(t *testing.T) {
			checkErr(t, ValidateName(tt.name), tt.want)
		})
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		clause string
		filter string
		want   error
	}{
		{"[MQTT-4.7.3-1] non-empty", "", ErrEmpty},
		{"plain", "sport/tennis/player1", nil},
		{"[MQTT-4.7.1-1] single separator", "/", nil},
		{"[MQTT-4.7.1-1] empty levels", "//", nil},
		{"[MQTT-4.7.1-2] hash alone", "#", nil},
		{"[MQTT-4.7.1-2] hash last", "sport/tennis/player1/#", nil},
		{"[MQTT-4.7.1-2] hash after empty level", "/#", nil},
		{"[MQTT-4.7.1-2] hash not alone in level", "sport/tennis#", ErrInvalidFilter},
		{"[MQTT-4.7.1-2] hash not last", "sport/tennis/#/ranking", ErrInvalidFilter},
		{"[MQTT-4.7.1-2] hash hash", "##", ErrInvalidFilter},
		{"[MQTT-4.7.1-2] hash then slash", "#/", ErrInvalidFilter},
		{"[MQTT-4.7.1-2] leading hash in level", "a/#b", ErrInvalidFilter},
		{"[MQTT-4.7.1-3] plus alone", "+", nil},
		{"[MQTT-4.7.1-3] plus first", "+/tennis/#", nil},
		{"[MQTT-4.7.1-3] plus middle", "sport/+/player1", nil},
		{"[MQTT-4.7.1-3] plus plus", "+/+", nil},
		{"[MQTT-4.7.1-3] plus with empty levels", "/+", nil},
		{"[MQTT-4.7.1-3] plus between empty levels", "/+/", nil},
		{"[MQTT-4.7.1-3] plus then hash", "+/#", nil},
		{"[MQTT-4.7.1-3] plus not alone", "sport+", ErrInvalidFilter},
		{"[MQTT-4.7.1-3] plus prefix", "+sport", ErrInvalidFilter},
		{"[MQTT-4.7.1-3] plus plus same level", "++", ErrInvalidFilter},
		{"[MQTT-4.7.2-1] dollar filter", "$SYS/#", nil},
		{"[MQTT-1.5.4-2] U+0000", "a/\x00", ErrInvalidFilter},
		{"max length", strings.Repeat("a", MaxLen), nil},
		{"too long", strings.Repeat("a", MaxLen+1), ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.clause, func(t *testing.T) {
			checkErr(t, ValidateFilter(tt.filter), tt.want)
		})
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		clause       string
		filter       string
		group, inner string
		shared       bool
		want         error
	}{
		{"not shared", "sport/#", "", "", false, nil},
		{"not shared, no slash", "$share", "", "", false, nil},
		{"not shared, other dollar", "$SYS/#", "", "", false, nil},
		{"[MQTT-4.8.2-1] simple", "$share/g/sport/#", "g", "sport/#", true, nil},
		{"[MQTT-4.8.2-1] wildcard inner", "$share/consumer1/+", "consumer1", "+", true, nil},
		{"[MQTT-4.8.2-1] empty-level inner", "$share/g//", "g", "/", true, nil},
		{"[MQTT-4.8.2-1] inner starts with slash", "$share/g//finance", "g", "/finance", true, nil},
		{"[MQTT-4.8.2-1] empty group", "$share//a", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-1] prefix only", "$share/", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-1] no filter", "$share/g", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-1] empty filter", "$share/g/", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-2] plus in group", "$share/g+/a", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-2] group is plus", "$share/+/a", "", "", true, ErrInvalidShare},
		{"[MQTT-4.8.2-2] hash in group", "$share/#/a", "", "", true, ErrInvalidShare},
		{"[MQTT-4.7.1-2] bad inner", "$share/g/a/#/b", "", "", true, ErrInvalidShare},
		{"[MQTT-4.7.1-3] bad inner plus", "$share/g/a+", "", "", true, ErrInvalidShare},
	}
	for _, tt := range tests {
		t.Run(tt.clause, func(t *testing.T) {
			group, inner, shared, err := ParseShared(tt.filter)
			checkErr(t, err, tt.want)
			if group != tt.group || inner != tt.inner || shared != tt.shared {
				t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v",
					tt.filter, group, inner, shared, tt.group, tt.inner, tt.shared)
			}
		})
	}
	// A bad inner filter also wraps the ValidateFilter error.
	if _, _, _, err := ParseShared("$share/g/a#"); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("ParseShared bad inner: err = %v, want wrapping %v", err, ErrInvalidFilter)
	}
}

// matchTests are shared by TestMatch and the Trie tests.
var matchTests = []struct {
	clause       string
	filter, name string
	want         bool
}{
	{"exact", "sport/tennis/player1", "sport/tennis/player1", true},
	{"exact mismatch", "sport/tennis/player1", "sport/tennis/player2", false},
	{"shorter name", "sport/tennis", "sport", false},
	{"longer name", "sport", "sport/tennis", false},
	{"case sensitive", "Sport", "sport", false},
	{"[MQTT-4.7.1-2] hash parent", "sport/tennis/player1/#", "sport/tennis/player1", true},
	{"[MQTT-4.7.1-2] hash child", "sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"[MQTT-4.7.1-2] hash grandchild", "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"[MQTT-4.7.1-2] hash other branch", "sport/tennis/player1/#", "sport/tennis/player2", false},
	{"[MQTT-4.7.1-2] sport/# matches sport", "sport/#", "sport", true},
	{"[MQTT-4.7.1-2] sport/# matches sport/", "sport/#", "sport/", true},
	{"[MQTT-4.7.1-2] hash not prefix of level", "sport/#", "sports", false},
	{"[MQTT-4.7.1-2] hash all", "#", "a/b/c", true},
	{"[MQTT-4.7.1-2] hash all, slash", "#", "/", true},
	{"[MQTT-4.7.1-2] /# matches /", "/#", "/", true},
	{"[MQTT-4.7.1-2] /# matches empty first level parent", "/#", "/a/b", true},
	{"[MQTT-4.7.1-2] /# not a", "/#", "a", false},
	{"[MQTT-4.7.1-3] plus one level", "sport/tennis/+", "sport/tennis/player1", true},
	{"[MQTT-4.7.1-3] plus not two levels", "sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"[MQTT-4.7.1-3] plus not zero levels", "sport/tennis/+", "sport/tennis", false},
	{"[MQTT-4.7.1-3] plus empty level", "sport/+", "sport/", true},
	{"[MQTT-4.7.1-3] +/+ matches /finance", "+/+", "/finance", true},
	{"[MQTT-4.7.1-3] /+ matches /finance", "/+", "/finance", true},
	{"[MQTT-4.7.1-3] + not /finance", "+", "/finance", false},
	{"[MQTT-4.7.1-3] + matches a", "+", "a", true},
	{"[MQTT-4.7.1-3] +/+ matches /", "+/+", "/", true},
	{"[MQTT-4.7.1-3] + not /", "+", "/", false},
	{"[MQTT-4.7.1-3] middle plus", "a/+/c", "a/b/c", true},
	{"[MQTT-4.7.1-3] middle plus empty", "a/+/c", "a//c", true},
	{"[MQTT-4.7.1-3] middle plus mismatch", "a/+/c", "a/b/d", false},
	{"[MQTT-4.7.1-3] plus then hash", "+/#", "a", true},
	{"[MQTT-4.7.1-3] plus then hash deep", "+/#", "a/b/c", true},
	{"[MQTT-4.7.1-3] plus/tennis/#", "+/tennis/#", "sport/tennis/player1", true},
	{"empty levels exact", "//", "//", true},
	{"empty levels mismatch", "//", "/", false},
	{"[MQTT-4.7.2-1] # not $SYS/x", "#", "$SYS/x", false},
	{"[MQTT-4.7.2-1] # not $SYS", "#", "$SYS", false},
	{"[MQTT-4.7.2-1] + not $SYS", "+", "$SYS", false},
	{"[MQTT-4.7.2-1] +/# not $SYS/x", "+/#", "$SYS/x", false},
	{"[MQTT-4.7.2-1] $SYS/# matches $SYS/x", "$SYS/#", "$SYS/x", true},
	{"[MQTT-4.7.2-1] $SYS/# matches $SYS", "$SYS/#", "$SYS", true},
	{"[MQTT-4.7.2-1] +/monitor/Clients not $SYS", "+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"[MQTT-4.7.2-1] $SYS/monitor/+", "$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"[MQTT-4.7.2-1] $ only at root", "a/+", "a/$b", true},
	{"[MQTT-4.7.2-1] # matches nested $", "a/#", "a/$b/c", true},
	{"[MQTT-4.7.2-1] literal $", "$", "$", true},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		t.Run(tt.clause, func(t *testing.T) {
			checkValid(t, tt.filter, tt.name)
			if got := Match(tt.filter, tt.name); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
			}
		})
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		s    string
		want int
	}{
		{"a", 1}, {"/", 2}, {"//", 3}, {"a/b/c", 3}, {"sport/#", 2}, {"", 1},
	}
	for _, tt := range tests {
		if got := Levels(tt.s); got != tt.want {
			t.Errorf("Levels(%q) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func checkErr(t *testing.T, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("err = %v, want nil", got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Errorf("err = %v, want %v", got, want)
	}
}

func checkValid(t *testing.T, filter, name string) {
	t.Helper()
	if err := ValidateFilter(filter); err != nil {
		t.Fatalf("test filter %q invalid: %v", filter, err)
	}
	if err := ValidateName(name); err != nil {
		t.Fatalf("test name %q invalid: %v", name, err)
	}
}

func FuzzValidateFilter(f *testing.F) {
	for _, s := range []string{"", "#", "+", "/", "a/+/b/#", "sport+", "a/#/b", "++", "#/", "\x00", "$share/g/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		err := ValidateFilter(filter)
		// Reference: split into levels and check each one.
		want := filter != "" && len(filter) <= MaxLen && !strings.ContainsRune(filter, 0)
		levels := strings.Split(filter, "/")
		for i, l := range levels {
			if strings.ContainsAny(l, "+#") && l != "+" && l != "#" {
				want = false
			}
			if l == "#" && i != len(levels)-1 {
				want = false
			}
		}
		if (err == nil) != want {
			t.Fatalf("ValidateFilter(%q) = %v, want valid=%v", filter, err, want)
		}
		// A valid name is a valid filter; names reject every wildcard.
		if ValidateName(filter) == nil && err != nil {
			t.Fatalf("name %q valid but filter invalid: %v", filter, err)
		}
	})
}

func FuzzParseShared(f *testing.F) {
	for _, s := range []string{"$share/g/a", "$share//a", "$share/g", "$share/g/", "$share/+/a", "$share/g/#", "a/b", "$share", "$share/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		group, inner, shared, err := ParseShared(filter)
		if shared != strings.HasPrefix(filter, "$share/") {
			t.Fatalf("ParseShared(%q): shared = %v", filter, shared)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidShare) {
				t.Fatalf("ParseShared(%q): err %v does not wrap ErrInvalidShare", filter, err)
			}
			if group != "" || inner != "" {
				t.Fatalf("ParseShared(%q): non-empty results with error", filter)
			}
			return
		}
		if !shared {
			if group != "" || inner != "" {
				t.Fatalf("ParseShared(%q): non-empty results for non-shared", filter)
			}
			return
		}
		if group == "" || strings.ContainsAny(group, "+#/") {
			t.Fatalf("ParseShared(%q): bad group %q", filter, group)
		}
		if ValidateFilter(inner) != nil {
			t.Fatalf("ParseShared(%q): bad inner %q", filter, inner)
		}
		if "$share/"+group+"/"+inner != filter {
			t.Fatalf("ParseShared(%q) = %q, %q: does not reassemble", filter, group, inner)
		}
	})
}
