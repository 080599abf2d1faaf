package topic

import (
	"strings"
	"sync"
)

// Entry is one subscription found by Trie.Match: the subscriber key and the
// value stored with it.
type Entry[K comparable, V any] struct {
	Key   K
	Value V
}

// Trie is a subscription index from topic filters to (key, value) pairs,
// holding at most one value per (filter, key): subscribing the same key to
// the same filter again replaces the value. It is safe for concurrent use;
// Match takes only a read lock, so matches run in parallel.
//
// The zero value is not usable; call NewTrie.
type Trie[K comparable, V any] struct {
	// A match read-locks one of the stripes, chosen by its caller's hint;
	// a change write-locks them all. Taking a read lock writes its lock
	// word, so matches on several cores sharing one RWMutex made its cache
	// line travel between them at every message.
	locks [lockStripes]rwStripe
	root  node[K, V]
	n     int
}

// lockStripes is the number of read lock stripes of a Trie.
const lockStripes = 16

// rwStripe is one read lock stripe, alone on its cache lines.
type rwStripe struct {
	sync.RWMutex
	_ [128 - 24]byte
}

func (t *Trie[K, V]) lock() {
	for i := range t.locks {
		t.locks[i].Lock()
	}
}

func (t *Trie[K, V]) unlock() {
	for i := range t.locks {
		t.locks[i].Unlock()
	}
}

// kidsMax is the number of literal children kept in a slice before a node
// switches to a map. Most nodes in real topic trees have one child.
const kidsMax = 8

// indexMin is the subscriber count at which a node builds a key index.
const indexMin = 16

type kid[K comparable, V any] struct {
	level string
	node  *node[K, V]
}

// node is one topic level. Literal children live in kids (small fan-out) or
// in kmap (large fan-out); '+' and '#' children have dedicated pointers.
// Subscribers are a slice so Match can append them in one copy; index maps a
// key to its position once the slice is large.
type node[K comparable, V any] struct {
	kids  []kid[K, V]
	kmap  map[string]*node[K, V]
	plus  *node[K, V]
	hash  *node[K, V]
	subs  []Entry[K, V]
	index map[K]int
}

// NewTrie returns an empty Trie.
func NewTrie[K comparable, V any]() *Trie[K, V] {
	return &Trie[K, V]{}
}

// child returns the child for a filter level, or nil.
func (n *node[K, V]) child(level string) *node[K, V] {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.literal(level)
}

// literal returns the literal child for a level, or nil.
func (n *node[K, V]) literal(level string) *node[K, V] {
	if n.kmap != nil {
		return n.kmap[level]
	}
	for i := range n.kids {
		if n.kids[i].level == level {
			return n.kids[i].node
		}
	}
	return nil
}

// addChild creates the child for a filter level, which must not exist.
func (n *node[K, V]) addChild(level string) *node[K, V] {
	c := &node[K, V]{}
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.kmap != nil {
			n.kmap[level] = c
		} else if len(n.kids) < kidsMax {
			n.kids = append(n.kids, kid[K, V]{level, c})
		} else {
			n.kmap = make(map[string]*node[K, V], 2*kidsMax)
			for _, k := range n.kids {
				n.kmap[k.level] = k.node
			}
			n.kids = nil
			n.kmap[level] = c
		}
	}
	return c
}

// removeChild deletes the child for a filter level.
func (n *node[K, V]) removeChild(level string) {
	switch level {
	case "+":
		n.plus = nil
	case "#":
		n.hash = nil
	default:
		if n.kmap != nil {
			delete(n.kmap, level)
			if len(n.kmap) == 0 {
				n.kmap = nil
			}
			return
		}
		for i := range n.kids {
			if n.kids[i].level == level {
				last := len(n.kids) - 1
				n.kids[i] = n.kids[last]
				n.kids[last] = kid[K, V]{}
				n.kids = n.kids[:last]
				if last == 0 {
					n.kids = nil
				}
				return
			}
		}
	}
}

func (n *node[K, V]) empty() bool {
	return len(n.subs) == 0 && len(n.kids) == 0 && n.kmap == nil && n.plus == nil && n.hash == nil
}

// find returns the position of key in subs, or -1.
func (n *node[K, V]) find(key K) int {
	if n.index != nil {
		if i, ok := n.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].Key == key {
			return i
		}
	}
	return -1
}

func (n *node[K, V]) put(key K, value V) (existed bool) {
	if i := n.find(key); i >= 0 {
		n.subs[i].Value = value
		return true
	}
	n.subs = append(n.subs, Entry[K, V]{key, value})
	if n.index != nil {
		n.index[key] = len(n.subs) - 1
	} else if len(n.subs) >= indexMin {
		n.index = make(map[K]int, len(n.subs))
		for i := range n.subs {
			n.index[n.subs[i].Key] = i
		}
	}
	return false
}

func (n *node[K, V]) remove(key K) bool {
	i := n.find(key)
	if i < 0 {
		return false
	}
	last := len(n.subs) - 1
	if i != last {
		n.subs[i] = n.subs[last]
		if n.index != nil {
			n.index[n.subs[i].Key] = i
		}
	}
	n.subs[last] = Entry[K, V]{}
	n.subs = n.subs[:last]
	if n.index != nil {
		delete(n.index, key)
		if len(n.subs) < indexMin/2 {
			n.index = nil
		}
	}
	if last == 0 {
		n.subs = nil
	} else if cap(n.subs) > 32 && len(n.subs) < cap(n.subs)/4 {
		n.subs = append([]Entry[K, V](nil), n.subs...)
	}
	return true
}

// Subscribe adds key's subscription to filter with value, or replaces the
// value if key is already subscribed to exactly this filter; existed reports
// a replacement. The filter must already be valid (ValidateFilter); a shared
// subscription should be indexed by its inner filter.
func (t *Trie[K, V]) Subscribe(filter string, key K, value V) (existed bool) {
	t.lock()
	defer t.unlock()
	n := &t.root
	cloned := false
	for {
		level, rest, more := strings.Cut(filter, "/")
		c := n.child(level)
		if c == nil {
			if !cloned {
				// Do not pin the caller's (possibly packet-sized) buffer
				// with map keys that are substrings of it.
				filter = strings.Clone(filter)
				level, rest, more = strings.Cut(filter, "/")
				cloned = true
			}
			c = n.addChild(level)
		}
		n = c
		if !more {
			break
		}
		filter = rest
	}
	existed = n.put(key, value)
	if !existed {
		t.n++
	}
	return existed
}

// Unsubscribe removes key's subscription to filter and reports whether it
// existed. Nodes left empty are pruned so their memory can be reclaimed.
func (t *Trie[K, V]) Unsubscribe(filter string, key K) bool {
	t.lock()
	defer t.unlock()
	if !unsubscribe(&t.root, filter, key) {
		return false
	}
	t.n--
	return true
}

func unsubscribe[K comparable, V any](n *node[K, V], filter string, key K) bool {
	level, rest, more := strings.Cut(filter, "/")
	c := n.child(level)
	if c == nil {
		return false
	}
	var removed bool
	if more {
		removed = unsubscribe(c, rest, key)
	} else {
		removed = c.remove(key)
	}
	if removed && c.empty() {
		n.removeChild(level)
	}
	return removed
}

// Match appends to dst every subscription whose filter matches the topic
// name and returns the extended slice. The name must be valid
// (ValidateName). Filters starting with a wildcard do not match names
// starting with '$' [MQTT-4.7.2-1]. A key subscribed through several
// overlapping filters appears once per matching filter; the caller merges.
// Match calls no user code while holding the lock and does not allocate when
// dst has enough capacity.
func (t *Trie[K, V]) Match(name string, dst []Entry[K, V]) []Entry[K, V] {
	return t.MatchHint(name, 0, dst)
}

// MatchHint is Match taking the read lock stripe hint chooses: callers on
// different cores that pass different hints (one per connection, say) do
// not contend for a lock word.
func (t *Trie[K, V]) MatchHint(name string, hint uint32, dst []Entry[K, V]) []Entry[K, V] {
	l := &t.locks[hint%lockStripes]
	l.RLock()
	defer l.RUnlock()
	root := &t.root
	if len(name) > 0 && name[0] == '$' {
		// [MQTT-4.7.2-1]: skip the root '+' and '#' children.
		level, rest, more := strings.Cut(name, "/")
		if c := root.literal(level); c != nil {
			dst = matchNode(c, rest, more, dst)
		}
		return dst
	}
	return matchLevel(root, name, dst)
}

// matchLevel matches name (the remaining levels, at least one) against the
// children of n.
func matchLevel[K comparable, V any](n *node[K, V], name string, dst []Entry[K, V]) []Entry[K, V] {
	if n.hash != nil {
		dst = append(dst, n.hash.subs...)
	}
	level, rest, more := strings.Cut(name, "/")
	if c := n.literal(level); c != nil {
		dst = matchNode(c, rest, more, dst)
	}
	if n.plus != nil {
		dst = matchNode(n.plus, rest, more, dst)
	}
	return dst
}

// matchNode continues at child c after it consumed one level; more reports
// whether rest holds further levels.
func matchNode[K comparable, V any](c *node[K, V], rest string, more bool, dst []Entry[K, V]) []Entry[K, V] {
	if more {
		return matchLevel(c, rest, dst)
	}
	dst = append(dst, c.subs...)
	if c.hash != nil {
		// "x/#" also matches "x" [MQTT-4.7.1-2].
		dst = append(dst, c.hash.subs...)
	}
	return dst
}

// Len returns the number of (filter, key) subscriptions in the trie.
func (t *Trie[K, V]) Len() int {
	t.locks[0].RLock()
	defer t.locks[0].RUnlock()
	return t.n
}
