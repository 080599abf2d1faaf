package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// sub is one (filter, key) subscription in the reference model.
type sub struct {
	filter string
	key    int
}

// model is the brute-force reference for Trie.
type model map[sub]int

func (m model) match(name string) []Entry[int, int] {
	var out []Entry[int, int]
	for s, v := range m {
		if Match(s.filter, name) {
			out = append(out, Entry[int, int]{s.key, v})
		}
	}
	return out
}

func sortEntries(e []Entry[int, int]) {
	slices.SortFunc(e, func(a, b Entry[int, int]) int {
		if a.Key != b.Key {
			return a.Key - b.Key
		}
		return a.Value - b.Value
	})
}

func checkTrieMatch(t *testing.T, tr *Trie[int, int], m model, name string) {
	t.Helper()
	got := tr.Match(name, nil)
	want := m.match(name)
	sortEntries(got)
	sortEntries(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Trie.Match(%q) = %v, want %v", name, got, want)
	}
}

func TestTrieMatchTable(t *testing.T) {
	for _, tt := range matchTests {
		t.Run(tt.clause, func(t *testing.T) {
			tr := NewTrie[int, int]()
			tr.Subscribe(tt.filter, 1, 7)
			got := tr.Match(tt.name, nil)
			if (len(got) == 1) != tt.want || len(got) > 1 {
				t.Errorf("Trie.Match(%q) with filter %q = %v, want match=%v", tt.name, tt.filter, got, tt.want)
			}
		})
	}
}

func TestTrieSubscribeUnsubscribe(t *testing.T) {
	tr := NewTrie[string, int]()
	steps := []struct {
		op     string // "sub" or "unsub"
		filter string
		key    string
		value  int
		want   bool // existed
		length int
	}{
		{"sub", "a/b", "c1", 1, false, 1},
		{"sub", "a/b", "c1", 2, true, 1},
		{"sub", "a/b", "c2", 3, false, 2},
		{"sub", "a/+", "c1", 4, false, 3},
		{"sub", "#", "c3", 5, false, 4},
		{"unsub", "a/b", "c3", 0, false, 4},
		{"unsub", "a/c", "c1", 0, false, 4},
		{"unsub", "a/b", "c1", 0, true, 3},
		{"unsub", "a/b", "c1", 0, false, 3},
		{"unsub", "a/b", "c2", 0, true, 2},
		{"unsub", "a/+", "c1", 0, true, 1},
		{"unsub", "#", "c3", 0, true, 0},
	}
	for i, s := range steps {
		var got bool
		if s.op == "sub" {
			got = tr.Subscribe(s.filter, s.key, s.value)
		} else {
			got = tr.Unsubscribe(s.filter, s.key)
		}
		if got != s.want || tr.Len() != s.length {
			t.Fatalf("step %d %s(%q, %q) = %v, Len %d; want %v, Len %d", i, s.op, s.filter, s.key, got, tr.Len(), s.want, s.length)
		}
	}
	// Replacement is visible in Match.
	tr.Subscribe("x", "k", 1)
	tr.Subscribe("x", "k", 2)
	if got := tr.Match("x", nil); len(got) != 1 || got[0].Value != 2 {
		t.Fatalf("after replace Match = %v", got)
	}
	tr.Unsubscribe("x", "k")
	if !tr.root.empty() {
		t.Fatalf("root not pruned: %+v", tr.root)
	}
}

// randLevels builds a random topic over a tiny alphabet so collisions and
// empty levels are common. wild allows '+' and a trailing '#'.
func randTopic(r *rand.Rand, wild bool) string {
	alpha := []string{"a", "b", "", "$x", "c"}
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
			l := alpha[r.IntN(len(alpha))]
			if i > 0 && l == "$x" {
				l = "x$"
			}
			if i == 0 && l == "$x" && r.IntN(2) == 0 {
				l = "$SYS"
			}
			sb.WriteString(l)
		}
	}
	if sb.Len() == 0 {
		return "a" // a single empty level is the invalid empty topic
	}
	return sb.String()
}

func TestTrieProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		tr := NewTrie[int, int]()
		m := model{}
		for op := range 2000 {
			f := randTopic(r, true)
			if err := ValidateFilter(f); err != nil {
				t.Fatalf("generated invalid filter %q: %v", f, err)
			}
			key := r.IntN(20)
			if r.IntN(3) == 0 {
				_, had := m[sub{f, key}]
				delete(m, sub{f, key})
				if got := tr.Unsubscribe(f, key); got != had {
					t.Fatalf("round %d op %d: Unsubscribe(%q, %d) = %v, want %v", round, op, f, key, got, had)
				}
			} else {
				_, had := m[sub{f, key}]
				m[sub{f, key}] = op
				if got := tr.Subscribe(f, key, op); got != had {
					t.Fatalf("round %d op %d: Subscribe(%q, %d) = %v, want %v", round, op, f, key, got, had)
				}
			}
			if tr.Len() != len(m) {
				t.Fatalf("Len = %d, want %d", tr.Len(), len(m))
			}
			checkTrieMatch(t, tr, m, randTopic(r, false))
		}
		// Remove everything: the trie must prune back to an empty root.
		for s := range m {
			if !tr.Unsubscribe(s.filter, s.key) {
				t.Fatalf("Unsubscribe(%q, %d) = false", s.filter, s.key)
			}
		}
		if tr.Len() != 0 || !tr.root.empty() {
			t.Fatalf("round %d: trie not empty after removing all: Len %d", round, tr.Len())
		}
	}
}

// TestTrieManySubscribers exercises the key index and child maps.
func TestTrieManySubscribers(t *testing.T) {
	tr := NewTrie[int, int]()
	m := model{}
	for k := range 200 {
		for _, f := range []string{"a/b", "a/+", "#", fmt.Sprintf("a/%d", k%30)} {
			tr.Subscribe(f, k, k)
			m[sub{f, k}] = k
		}
	}
	for _, name := range []string{"a/b", "a/7", "a/29", "b"} {
		checkTrieMatch(t, tr, m, name)
	}
	for k := 0; k < 200; k += 3 {
		tr.Unsubscribe("a/b", k)
		delete(m, sub{"a/b", k})
		tr.Unsubscribe(fmt.Sprintf("a/%d", k%30), k)
		delete(m, sub{fmt.Sprintf("a/%d", k%30), k})
	}
	for _, name := range []string{"a/b", "a/7", "a/29", "b"} {
		checkTrieMatch(t, tr, m, name)
	}
	for s := range m {
		tr.Unsubscribe(s.filter, s.key)
	}
	if !tr.root.empty() {
		t.Fatal("root not pruned")
	}
}

func TestTrieMatchNoAlloc(t *testing.T) {
	tr := NewTrie[int, int]()
	for k := range 100 {
		tr.Subscribe(fmt.Sprintf("t/r/%d/gas", k), k, k)
		tr.Subscribe(fmt.Sprintf("t/+/%d/#", k), k, k)
	}
	dst := make([]Entry[int, int], 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		dst = tr.Match("t/r/42/gas", dst[:0])
	})
	if allocs != 0 || len(dst) != 2 {
		t.Fatalf("Match allocs = %v, len %d; want 0 allocs, 2 entries", allocs, len(dst))
	}
}

func TestTrieConcurrent(t *testing.T) {
	tr := NewTrie[int, int]()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			var dst []Entry[int, int]
			for i := range 3000 {
				f := randTopic(r, true)
				switch i % 3 {
				case 0:
					tr.Subscribe(f, w, i)
				case 1:
					tr.Unsubscribe(f, w)
				default:
					// Each reader on its own lock stripe: a change must
					// exclude all of them (the race detector checks).
					dst = tr.MatchHint(randTopic(r, false), uint32(w), dst[:0])
					_ = tr.Len()
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzMatch(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.filter, tt.name)
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name) // must not panic on any input
		if ValidateFilter(filter) != nil || ValidateName(name) != nil {
			return
		}
		tr := NewTrie[int, int]()
		tr.Subscribe(filter, 1, 1)
		tr.Subscribe("#", 2, 2)
		tr.Subscribe(name, 3, 3)
		m := model{{filter, 1}: 1, {"#", 2}: 2, {name, 3}: 3}
		checkTrieMatch(t, tr, m, name)
		if !Match(name, name) {
			t.Fatalf("name %q does not match itself", name)
		}
		// Reference: split-based matcher.
		if want := refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", filter, name, got, want)
		}
		if !tr.Unsubscribe(filter, 1) || tr.Len() != 2 {
			t.Fatalf("Unsubscribe(%q) failed", filter)
		}
	})
}

// refMatch is an independent, allocation-heavy matcher used by FuzzMatch.
func refMatch(filter, name string) bool {
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl, nl := strings.Split(filter, "/"), strings.Split(name, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(nl) || (f != "+" && f != nl[i]) {
			return false
		}
	}
	return len(fl) == len(nl)
}

// benchTrie builds n subscriptions shaped like a multi-tenant IoT fleet:
// "tenant<t>/read/<mac>/gas" for most, and every tenth one wildcard-heavy.
func benchTrie(n int) (*Trie[int, uint8], []string) {
	tr := NewTrie[int, uint8]()
	names := make([]string, 0, 1024)
	for i := range n {
		mac := fmt.Sprintf("%012x", uint64(i)*0x9e3779b1)
		tenant := fmt.Sprintf("tenant%d", i%16)
		var f string
		switch i % 20 {
		case 0:
			f = tenant + "/+/" + mac + "/#"
		case 10:
			f = tenant + "/read/+/gas"
			if i%1000 != 10 {
				f = tenant + "/+/" + mac + "/+"
			}
		default:
			f = tenant + "/read/" + mac + "/gas"
		}
		tr.Subscribe(f, i, 1)
		if len(names) < cap(names) && i%997 == 0 {
			names = append(names, tenant+"/read/"+mac+"/gas")
		}
	}
	return tr, names
}

func BenchmarkTrieMatch1M(b *testing.B) {
	tr, names := benchTrie(1_000_000)
	dst := make([]Entry[int, uint8], 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		dst = tr.Match(names[i%len(names)], dst[:0])
		i++
	}
}

func BenchmarkTrieMatch1MParallel(b *testing.B) {
	tr, names := benchTrie(1_000_000)
	b.ReportAllocs()
	b.ResetTimer()
	var hints atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]Entry[int, uint8], 0, 1024)
		hint := hints.Add(1) // one lock stripe per reader, as one per connection
		i := 0
		for pb.Next() {
			dst = tr.MatchHint(names[i%len(names)], hint, dst[:0])
			i++
		}
	})
}

func BenchmarkTrieSubscribe(b *testing.B) {
	filters := make([]string, 1<<16)
	for i := range filters {
		filters[i] = fmt.Sprintf("tenant%d/read/%012x/gas", i%16, uint64(i)*0x9e3779b1)
	}
	tr := NewTrie[int, uint8]()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(filters) {
			b.StopTimer()
			tr, i = NewTrie[int, uint8](), 0
			b.StartTimer()
		}
		tr.Subscribe(filters[i], i, 1)
		i++
	}
}
