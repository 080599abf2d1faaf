package auth

import (
	"crypto/rand"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/petrel-mqtt/petrel/broker"
)

// Per-connection decision caches hold at most this many topics or filters;
// beyond it decisions are computed each time (a few topic.Match calls).
const (
	maxCachedTopics  = 512
	maxCachedFilters = 128
)

// attrHandle is the Identity.Attrs key of the connection's cache handle.
const attrHandle = "auth.handle"

type atomicEngine struct{ p atomic.Pointer[engine] }

func (a *atomicEngine) Load() *engine   { return a.p.Load() }
func (a *atomicEngine) Store(e *engine) { a.p.Store(e) }

func randRead(b []byte) {
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
}

// pubLimit is a cached publish decision for one topic name: the highest
// QoS allowed without and with retain, -1 for none.
type pubLimit struct{ maxQoS, maxRetainQoS int8 }

// connState is one connection's compiled grants and decision caches. The
// grants are immutable; the caches are sync.Maps, whose Load is lock-free,
// so the publish path of a connection never waits on another's.
type connState struct {
	eng    *engine // the configuration the grants were compiled from
	g      *grants // nil: the identity may do nothing
	pub    sync.Map
	pubN   atomic.Int32
	sub    sync.Map
	subN   atomic.Int32
	handle string
	// cred is what the connection authenticated with (authnResult.cred),
	// kept across recompiles; "" when not known.
	cred string
}

func (st *connState) publish(name string) pubLimit {
	if v, ok := st.pub.Load(name); ok {
		return v.(pubLimit)
	}
	var lim pubLimit
	if st.g == nil {
		lim = pubLimit{-1, -1}
	} else {
		lim.maxQoS, lim.maxRetainQoS = st.g.publishLimits(name)
	}
	if st.pubN.Add(1) <= maxCachedTopics {
		st.pub.Store(name, lim)
	}
	return lim
}

// subLimit is a cached subscribe decision for one filter: the highest QoS
// (-1: refused) and the overlapping deny filters, shared by every caller.
type subLimit struct {
	maxQoS int8
	deny   []string
}

func (st *connState) subscribe(filter string) subLimit {
	if v, ok := st.sub.Load(filter); ok {
		return v.(subLimit)
	}
	lim := subLimit{maxQoS: -1}
	if st.g != nil {
		lim.maxQoS, lim.deny = st.g.subscribeDecision(filter)
	}
	if st.subN.Add(1) <= maxCachedFilters {
		st.sub.Store(filter, lim)
	}
	return lim
}

// stateCache finds a connection's connState from its Identity. The
// identity carries a unique handle in Attrs (written once, at CONNECT,
// before the broker shares it); the handle keys a sync.Map, so lookups
// are lock-free. runtime.AddCleanup removes the entry once the broker
// drops the Identity, so nothing needs a disconnect hook. An identity the
// cache does not know (made elsewhere, or copied) is compiled on each call
// but repeated calls with the same one (see last): correct, only slower.
type stateCache struct {
	m   sync.Map // handle -> *connState
	seq atomic.Uint64
	// prefix makes the handles of one Service its own: an Identity the
	// broker restored from its store (a will's holder, with its Attrs)
	// never names a live connection's state of another process or
	// Service. Set by New.
	prefix string
	// last is the state compiled for the last identity the cache did not
	// know: the broker re-checks an offline session with a copy of its
	// identity, asking once per subscription and queued topic, and the
	// grants are compiled once for the run instead of at each call. One
	// entry: it keeps one identity alive at most.
	last atomic.Pointer[unknownState]
}

// unknownState is a state compiled for an identity without a live handle.
type unknownState struct {
	id *broker.Identity
	st *connState
}

func (c *stateCache) register(id *broker.Identity, e *engine, g *grants, cred string) {
	h := c.prefix + strconv.FormatUint(c.seq.Add(1), 36)
	id.Attrs[attrHandle] = h
	c.m.Store(h, &connState{eng: e, g: g, handle: h, cred: cred})
	runtime.AddCleanup(id, func(h string) { c.m.Delete(h) }, h)
}

// lookup returns id's state for the running configuration e, recompiling
// the grants when the configuration was reloaded since.
func (c *stateCache) lookup(id *broker.Identity, e *engine) *connState {
	h := id.Attrs[attrHandle]
	if h != "" {
		if v, ok := c.m.Load(h); ok {
			st := v.(*connState)
			if st.eng == e {
				return st
			}
			nst := &connState{eng: e, g: recompile(id, e), handle: h, cred: st.cred}
			// Store only over the state we replace: a concurrent
			// cleanup or recompile wins.
			c.m.CompareAndSwap(h, st, nst)
			return nst
		}
	}
	if u := c.last.Load(); u != nil && u.id == id && u.st.eng == e {
		return u.st
	}
	st := &connState{eng: e, g: recompile(id, e)}
	c.last.Store(&unknownState{id: id, st: st})
	return st
}

// credential returns what id's live connection authenticated with, and
// false when the cache has no live state for id.
func (c *stateCache) credential(id *broker.Identity) (string, bool) {
	h := id.Attrs[attrHandle]
	if h == "" {
		return "", false
	}
	v, ok := c.m.Load(h)
	if !ok {
		return "", false
	}
	return v.(*connState).cred, true
}

// recompile compiles id's grants under e: with the roles e gives the
// identity now (rolesNow), none when e no longer knows it.
func recompile(id *broker.Identity, e *engine) *grants {
	roles, ok := e.rolesNow(id)
	if !ok || !safeLevel(id.Tenant) {
		return nil
	}
	g, err := compile(e.roles, roles, id.Tenant, id.ClientID, id.Username)
	if err != nil {
		return nil
	}
	return g
}
