package broker

import "sync"

// The interest this node declares to the fabric: one Watch per distinct
// (filter, share group) that at least one local subscription holds,
// reference-counted, so that the cluster carries a message only to nodes
// that want it and a node holds one fabric subscription per distinct
// filter however many local sessions share it.

// interestKey is one (filter, share) the fabric is told about: the inner
// filter ($share prefix removed) and the subscriber's shareKey (tenant,
// group and filter; "" for a plain subscription), opaque to the fabric.
type interestKey struct {
	filter, share string
}

// fabricInterest counts the local subscriptions per interestKey and
// brings the fabric's Watch/Unwatch state in line with the counts.
//
// The counts change where the subscription trie changes (subscribeTrie,
// unsubscribeTrie), under a session's Guard and sometimes Broker.mu; the
// fabric is called later, by sync, with no broker lock held: a fabric
// call may write to a connection. Whoever finds no sync running becomes
// the one that runs it, and runs until nothing is left to tell, so the
// Watch and Unwatch of one key are issued by one goroutine at a time and
// always alternate (Fabric contract). A key subscribed and unsubscribed
// before a sync ran costs the fabric nothing.
type fabricInterest struct {
	mu struct {
		sync.Mutex
		refs    map[interestKey]int      // local subscriptions per key; absent at 0
		watched map[interestKey]struct{} // keys the fabric was last told to Watch
		dirty   map[interestKey]struct{} // keys whose refs and watched may disagree
		syncing bool                     // a sync runs: others leave their keys to it
	}
}

// add counts one more local subscription to (filter, share).
func (fi *fabricInterest) add(filter, share string) {
	k := interestKey{filter, share}
	fi.mu.Lock()
	if fi.mu.refs == nil {
		fi.mu.refs = make(map[interestKey]int)
		fi.mu.watched = make(map[interestKey]struct{})
		fi.mu.dirty = make(map[interestKey]struct{})
	}
	fi.mu.refs[k]++
	if fi.mu.refs[k] == 1 {
		fi.mu.dirty[k] = struct{}{}
	}
	fi.mu.Unlock()
}

// remove counts one local subscription to (filter, share) fewer.
func (fi *fabricInterest) remove(filter, share string) {
	k := interestKey{filter, share}
	fi.mu.Lock()
	if n := fi.mu.refs[k]; n > 1 {
		fi.mu.refs[k] = n - 1
	} else if n == 1 {
		delete(fi.mu.refs, k)
		fi.mu.dirty[k] = struct{}{}
	}
	fi.mu.Unlock()
}

// sync tells f what changed since the last sync, unless another
// goroutine's sync runs (it will see the changes). It must be called
// with no broker lock held.
func (fi *fabricInterest) sync(f Fabric) {
	type call struct {
		k     interestKey
		watch bool
	}
	var calls []call
	for mine := false; ; mine = true {
		fi.mu.Lock()
		if fi.mu.syncing && !mine {
			fi.mu.Unlock()
			return
		}
		calls = calls[:0]
		for k := range fi.mu.dirty {
			_, want := fi.mu.refs[k]
			_, have := fi.mu.watched[k]
			switch {
			case want && !have:
				fi.mu.watched[k] = struct{}{}
				calls = append(calls, call{k, true})
			case !want && have:
				delete(fi.mu.watched, k)
				calls = append(calls, call{k, false})
			}
			delete(fi.mu.dirty, k)
		}
		if len(calls) == 0 {
			fi.mu.syncing = false
			fi.mu.Unlock()
			return
		}
		fi.mu.syncing = true
		fi.mu.Unlock()
		for _, c := range calls {
			if c.watch {
				f.Watch(c.k.filter, c.k.share)
			} else {
				f.Unwatch(c.k.filter, c.k.share)
			}
		}
	}
}

// subscribeTrie adds or replaces a subscription in the trie and, with a
// fabric, counts a new one in the node's interest.
func (b *Broker) subscribeTrie(inner string, k subKey, v subscriber) {
	if !b.subs.Subscribe(inner, k, v) && b.fabric != nil {
		b.interest.add(inner, v.shareKey)
	}
}

// unsubscribeTrie removes a subscription from the trie and, with a
// fabric, from the node's interest.
func (b *Broker) unsubscribeTrie(inner string, k subKey) {
	if b.subs.Unsubscribe(inner, k) && b.fabric != nil {
		b.interest.remove(inner, shareKeyOf(k.group, inner))
	}
}

// syncInterest tells the fabric the interest changes made so far. Called
// with no lock held, after the trie changed.
func (b *Broker) syncInterest() {
	if b.fabric != nil {
		b.interest.sync(b.fabric)
	}
}
