// Package retain stores retained messages: one value per topic name, with
// wildcard lookup by topic filter (MQTT 3.1.1 section 3.3.1.3, MQTT 5.0
// section 3.3.1.3).
package retain

import (
	"strings"
	"sync"
)

// Item is one retained (topic, value) pair returned by Index.Match.
type Item[V any] struct {
	Topic string
	Value V
}

// Index holds one value per topic name in a trie of topic levels, so that a
// filter such as "a/+/c" visits only matching branches and "#" walks a
// subtree. It is safe for concurrent use.
//
// The zero value is not usable; call New.
type Index[V any] struct {
	mu    sync.RWMutex
	root  node[V]
	n     int
	bytes int // sum of the values' Size, for values that have one (Sizer)
}

// Sizer is implemented by values whose size Index.Bytes adds up.
type Sizer interface{ Size() int }

// sizeOf returns v's Size, 0 for a value that has none.
func sizeOf[V any](v V) int {
	if s, ok := any(v).(Sizer); ok {
		return s.Size()
	}
	return 0
}

// kidsMax is the number of children kept in a slice before a node switches
// to a map.
const kidsMax = 8

type kid[V any] struct {
	level string
	node  *node[V]
}

// node is one topic level. A node holding a value also records the full
// topic (a clone, sharing memory with the level keys below the root).
type node[V any] struct {
	kids  []kid[V]
	kmap  map[string]*node[V]
	topic string
	val   V
	has   bool
}

// New returns an empty Index.
func New[V any]() *Index[V] {
	return &Index[V]{}
}

func (n *node[V]) child(level string) *node[V] {
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

func (n *node[V]) addChild(level string) *node[V] {
	c := &node[V]{}
	switch {
	case n.kmap != nil:
		n.kmap[level] = c
	case len(n.kids) < kidsMax:
		n.kids = append(n.kids, kid[V]{level, c})
	default:
		n.kmap = make(map[string]*node[V], 2*kidsMax)
		for _, k := range n.kids {
			n.kmap[k.level] = k.node
		}
		n.kids = nil
		n.kmap[level] = c
	}
	return c
}

func (n *node[V]) removeChild(level string) {
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
			n.kids[last] = kid[V]{}
			n.kids = n.kids[:last]
			if last == 0 {
				n.kids = nil
			}
			return
		}
	}
}

func (n *node[V]) empty() bool {
	return !n.has && len(n.kids) == 0 && n.kmap == nil
}

// each calls fn for every child until fn returns false.
func (n *node[V]) each(fn func(level string, c *node[V]) bool) bool {
	if n.kmap != nil {
		for l, c := range n.kmap {
			if !fn(l, c) {
				return false
			}
		}
		return true
	}
	for _, k := range n.kids {
		if !fn(k.level, k.node) {
			return false
		}
	}
	return true
}

// Set stores v as the retained value for topic, replacing any previous one.
// The topic must be a valid topic name (topic.ValidateName).
func (x *Index[V]) Set(topic string, v V) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := &x.root
	rest, cloned := topic, false
	for {
		level, r, more := strings.Cut(rest, "/")
		c := n.child(level)
		if c == nil {
			if !cloned {
				// Do not pin the caller's buffer; keys below share the clone.
				topic = strings.Clone(topic)
				rest = topic[len(topic)-len(rest):]
				level, r, more = strings.Cut(rest, "/")
				cloned = true
			}
			c = n.addChild(level)
		}
		n = c
		if !more {
			break
		}
		rest = r
	}
	if !n.has {
		if !cloned {
			topic = strings.Clone(topic)
		}
		n.topic, n.has = topic, true
		x.n++
	} else {
		x.bytes -= sizeOf(n.val)
	}
	n.val = v
	x.bytes += sizeOf(v)
}

// Delete removes the retained value for topic and reports whether it
// existed. Nodes left empty are pruned. The broker calls Delete when it
// receives a retained PUBLISH with an empty payload.
func (x *Index[V]) Delete(topic string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	size, ok := del(&x.root, topic)
	if !ok {
		return false
	}
	x.n--
	x.bytes -= size
	return true
}

// del removes topic's value below n, returning its size.
func del[V any](n *node[V], topic string) (int, bool) {
	level, rest, more := strings.Cut(topic, "/")
	c := n.child(level)
	if c == nil {
		return 0, false
	}
	var size int
	if more {
		var ok bool
		if size, ok = del(c, rest); !ok {
			return 0, false
		}
	} else {
		if !c.has {
			return 0, false
		}
		size = sizeOf(c.val)
		var zero V
		c.val, c.topic, c.has = zero, "", false
	}
	if c.empty() {
		n.removeChild(level)
	}
	return size, true
}

// Get returns the retained value for topic and whether there is one.
func (x *Index[V]) Get(topic string) (V, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := &x.root
	for {
		level, rest, more := strings.Cut(topic, "/")
		if n = n.child(level); n == nil {
			var zero V
			return zero, false
		}
		if !more {
			return n.val, n.has
		}
		topic = rest
	}
}

// Match appends to dst every retained (topic, value) whose topic matches
// filter and returns the extended slice. The filter must be valid
// (topic.ValidateFilter) and not a "$share/" filter. '+' matches one level,
// '#' the rest including the parent level, and a filter starting with a
// wildcard does not match topics starting with '$' [MQTT-4.7.2-1]. Results
// come in no particular order.
func (x *Index[V]) Match(filter string, dst []Item[V]) []Item[V] {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return match(&x.root, filter, true, dst)
}

// match matches filter (the remaining levels, at least one) against the
// children of n; root reports whether n is the root, where the $-rule
// applies.
func match[V any](n *node[V], filter string, root bool, dst []Item[V]) []Item[V] {
	level, rest, more := strings.Cut(filter, "/")
	switch level {
	case "#":
		n.each(func(l string, c *node[V]) bool {
			if !root || !strings.HasPrefix(l, "$") {
				dst = collect(c, dst)
			}
			return true
		})
		return dst
	case "+":
		n.each(func(l string, c *node[V]) bool {
			if !root || !strings.HasPrefix(l, "$") {
				dst = matchChild(c, rest, more, dst)
			}
			return true
		})
		return dst
	}
	if c := n.child(level); c != nil {
		dst = matchChild(c, rest, more, dst)
	}
	return dst
}

func matchChild[V any](c *node[V], rest string, more bool, dst []Item[V]) []Item[V] {
	if more {
		if rest == "#" && c.has {
			// "x/#" also matches "x" [MQTT-4.7.1-2].
			dst = append(dst, Item[V]{c.topic, c.val})
		}
		return match(c, rest, false, dst)
	}
	if c.has {
		dst = append(dst, Item[V]{c.topic, c.val})
	}
	return dst
}

// collect appends every value in the subtree rooted at n.
func collect[V any](n *node[V], dst []Item[V]) []Item[V] {
	if n.has {
		dst = append(dst, Item[V]{n.topic, n.val})
	}
	n.each(func(_ string, c *node[V]) bool {
		dst = collect(c, dst)
		return true
	})
	return dst
}

// Len returns the number of retained topics.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Bytes returns the sum of the retained values' sizes (their Size method;
// values without one count 0).
func (x *Index[V]) Bytes() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.bytes
}

// Range calls fn for every retained (topic, value) until fn returns false.
// It copies the items under the read lock and calls fn without holding it,
// so fn may use the Index; it sees the items present when Range was called.
func (x *Index[V]) Range(fn func(topic string, v V) bool) {
	x.mu.RLock()
	items := collect(&x.root, make([]Item[V], 0, x.n))
	x.mu.RUnlock()
	for _, it := range items {
		if !fn(it.Topic, it.Value) {
			return
		}
	}
}
