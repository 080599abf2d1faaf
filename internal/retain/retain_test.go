package retain

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/topic"
)

func sortItems(it []Item[int]) {
	slices.SortFunc(it, func(a, b Item[int]) int { return strings.Compare(a.Topic, b.Topic) })
}

// bruteMatch is the reference for Index.Match: topic.Match over every item.
func bruteMatch(m map[string]int, filter string) []Item[int] {
	var out []Item[int]
	for t, v := range m {
		if topic.Match(filter, t) {
			out = append(out, Item[int]{t, v})
		}
	}
	return out
}

func checkMatch(t *testing.T, x *Index[int], m map[string]int, filter string) {
	t.Helper()
	got := x.Match(filter, nil)
	want := bruteMatch(m, filter)
	sortItems(got)
	sortItems(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Match(%q) = %v, want %v", filter, got, want)
	}
}

func TestIndexMatchTable(t *testing.T) {
	topics := []string{
		"sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking",
		"sport/tennis/player1/score/wimbledon", "sport/tennis/player2", "/finance",
		"/", "//", "$SYS/monitor/Clients", "$SYS", "a/$b/c", "finance",
	}
	x := New[int]()
	m := map[string]int{}
	for i, tp := range topics {
		x.Set(tp, i)
		m[tp] = i
	}
	tests := []struct {
		clause string
		filter string
		want   []string
	}{
		{"[MQTT-4.7.1-2] player1/#", "sport/tennis/player1/#", []string{
			"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"}},
		{"[MQTT-4.7.1-2] sport/# matches sport", "sport/#", []string{
			"sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking",
			"sport/tennis/player1/score/wimbledon", "sport/tennis/player2"}},
		{"[MQTT-4.7.1-3] +/+", "+/+", []string{"/", "/finance", "sport/"}},
		{"[MQTT-4.7.1-3] /+", "/+", []string{"/", "/finance"}},
		{"[MQTT-4.7.1-3] +", "+", []string{"finance", "sport"}},
		{"[MQTT-4.7.2-1] # skips $", "#", []string{
			"/", "//", "/finance", "a/$b/c", "finance", "sport", "sport/", "sport/tennis/player1",
			"sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport/tennis/player2"}},
		{"[MQTT-4.7.2-1] $SYS/#", "$SYS/#", []string{"$SYS", "$SYS/monitor/Clients"}},
		{"[MQTT-4.7.2-1] +/monitor/Clients", "+/monitor/Clients", nil},
		{"[MQTT-4.7.2-1] $ only at root", "a/+/c", []string{"a/$b/c"}},
		{"exact", "sport/tennis/player2", []string{"sport/tennis/player2"}},
		{"no match", "nothing/#", nil},
	}
	for _, tt := range tests {
		t.Run(tt.clause, func(t *testing.T) {
			got := x.Match(tt.filter, nil)
			var names []string
			for _, it := range got {
				names = append(names, it.Topic)
				if it.Value != m[it.Topic] {
					t.Errorf("value for %q = %d, want %d", it.Topic, it.Value, m[it.Topic])
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, tt.want) {
				t.Errorf("Match(%q) = %q, want %q", tt.filter, names, tt.want)
			}
			checkMatch(t, x, m, tt.filter)
		})
	}
}

func TestIndexSetGetDelete(t *testing.T) {
	x := New[string]()
	if _, ok := x.Get("a"); ok {
		t.Fatal("Get on empty index found a value")
	}
	x.Set("a/b", "1")
	x.Set("a/b", "2")
	x.Set("a", "3")
	if v, ok := x.Get("a/b"); !ok || v != "2" {
		t.Fatalf("Get(a/b) = %q, %v", v, ok)
	}
	if x.Len() != 2 {
		t.Fatalf("Len = %d, want 2", x.Len())
	}
	if _, ok := x.Get("a/b/c"); ok {
		t.Fatal("Get(a/b/c) found a value")
	}
	if x.Delete("a/b/c") || x.Delete("b") {
		t.Fatal("Delete of missing topic reported true")
	}
	if !x.Delete("a") || x.Delete("a") {
		t.Fatal("Delete(a) wrong")
	}
	if v, ok := x.Get("a/b"); !ok || v != "2" {
		t.Fatalf("Get(a/b) after deleting parent = %q, %v", v, ok)
	}
	if !x.Delete("a/b") || x.Len() != 0 || !x.root.empty() {
		t.Fatalf("index not empty after deleting all: Len %d", x.Len())
	}
}

func TestIndexRange(t *testing.T) {
	x := New[int]()
	for i := range 50 {
		x.Set(fmt.Sprintf("r/%d", i), i)
	}
	seen := map[string]int{}
	x.Range(func(tp string, v int) bool {
		seen[tp] = v
		x.Delete(tp) // fn may use the index: Range holds no lock
		return true
	})
	if len(seen) != 50 || x.Len() != 0 {
		t.Fatalf("Range saw %d items, Len after = %d", len(seen), x.Len())
	}
	x.Set("a", 1)
	x.Set("b", 2)
	n := 0
	x.Range(func(string, int) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range continued after false: %d calls", n)
	}
}

func randTopic(r *rand.Rand, wild bool) string {
	alpha := []string{"a", "b", "", "c", "$x"}
	n := 1 + r.IntN(4)
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte('/')
		}
		switch {
		case wild && i == n-1 && r.IntN(4) == 0:
			sb.WriteByte('#')
		case wild && r.IntN(3) == 0:
			sb.WriteByte('+')
		default:
			sb.WriteString(alpha[r.IntN(len(alpha))])
		}
	}
	if sb.Len() == 0 {
		return "a"
	}
	return sb.String()
}

func TestIndexProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		x := New[int]()
		m := map[string]int{}
		for op := range 2000 {
			tp := randTopic(r, false)
			if r.IntN(3) == 0 {
				_, had := m[tp]
				delete(m, tp)
				if got := x.Delete(tp); got != had {
					t.Fatalf("Delete(%q) = %v, want %v", tp, got, had)
				}
			} else {
				m[tp] = op
				x.Set(tp, op)
			}
			if x.Len() != len(m) {
				t.Fatalf("Len = %d, want %d", x.Len(), len(m))
			}
			f := randTopic(r, true)
			if err := topic.ValidateFilter(f); err != nil {
				t.Fatalf("generated invalid filter %q: %v", f, err)
			}
			checkMatch(t, x, m, f)
			g := randTopic(r, false)
			if v, ok := x.Get(g); v != m[g] || ok != hasKey(m, g) {
				t.Fatalf("Get(%q) = %d, %v", g, v, ok)
			}
		}
		for tp := range m {
			x.Delete(tp)
		}
		if x.Len() != 0 || !x.root.empty() {
			t.Fatalf("round %d: not pruned", round)
		}
	}
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// TestIndexWide exercises the child map used for large fan-out.
func TestIndexWide(t *testing.T) {
	x := New[int]()
	m := map[string]int{}
	for i := range 300 {
		tp := fmt.Sprintf("w/%d/v", i)
		x.Set(tp, i)
		m[tp] = i
	}
	x.Set("$w/1/v", -1)
	m["$w/1/v"] = -1
	for _, f := range []string{"#", "w/+/v", "w/17/#", "+/+/+", "$w/+/v", "w/299/v"} {
		checkMatch(t, x, m, f)
	}
	for tp := range m {
		x.Delete(tp)
	}
	if !x.root.empty() {
		t.Fatal("not pruned")
	}
}

func TestIndexConcurrent(t *testing.T) {
	x := New[int]()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 5))
			var dst []Item[int]
			for i := range 3000 {
				switch i % 4 {
				case 0:
					x.Set(randTopic(r, false), i)
				case 1:
					x.Delete(randTopic(r, false))
				case 2:
					dst = x.Match(randTopic(r, true), dst[:0])
				default:
					x.Get(randTopic(r, false))
					x.Range(func(string, int) bool { return true })
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzIndexMatch(f *testing.F) {
	f.Add("a/+/c", "a/b/c")
	f.Add("#", "$SYS/x")
	f.Add("sport/#", "sport")
	f.Fuzz(func(t *testing.T, filter, name string) {
		if topic.ValidateFilter(filter) != nil || topic.ValidateName(name) != nil {
			return
		}
		x := New[int]()
		m := map[string]int{name: 1, "a": 2, "$SYS/a": 3}
		for tp, v := range m {
			x.Set(tp, v)
		}
		checkMatch(t, x, m, filter)
	})
}

func BenchmarkRetainMatch(b *testing.B) {
	x := New[int]()
	for i := range 100_000 {
		x.Set(fmt.Sprintf("tenant%d/read/%012x/gas", i%16, uint64(i)*0x9e3779b1), i)
	}
	filters := []string{
		"tenant3/read/+/gas", // ~6250 results
		"tenant3/read/" + fmt.Sprintf("%012x", uint64(3)*0x9e3779b1) + "/#", // 1 result
		"tenant3/read/" + fmt.Sprintf("%012x", uint64(3)*0x9e3779b1) + "/gas",
	}
	for _, f := range filters {
		b.Run(strings.ReplaceAll(f, "/", "_"), func(b *testing.B) {
			dst := make([]Item[int], 0, 8192)
			b.ReportAllocs()
			for b.Loop() {
				dst = x.Match(f, dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "items")
		})
	}
}
