package auth

import (
	"hash/maphash"
	"net"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Attempt names who a password check is for: the name (an MQTT username,
// or a token endpoint client id) and the client's address (the zero Addr
// when it has none).
type Attempt struct {
	Name string
	Addr netip.Addr
}

// AddrOf returns the IP address of a (a *net.TCPAddr, or any address
// whose String is host:port), or the zero Addr.
func AddrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// addrKey is the key of an address's failure or rate limit: the address
// itself for IPv4, its /64 network for IPv6 (one host is commonly given a
// whole /64, so per-address keys would let it change keys at will).
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// pairKey is a (name, address) pair that authenticated.
type pairKey struct {
	name uint64
	addr netip.Addr
}

// failures counts recent failed password checks per name and per
// address, each in a token bucket of failures (burst N, refilled at N per
// window): a name or address whose bucket is empty is refused before any
// hash is computed. A (name, address) pair that authenticated recently has
// a bucket of its own instead of the two, so guessing a user's password
// from elsewhere does not lock that user out of the addresses it uses.
// Names are kept as 64-bit seeded hashes, so a key costs the same whatever
// the name's length. Each map holds at most max entries and forgets the
// least recently used beyond, so spraying names or addresses cannot grow
// it (it forgets the oldest entries instead). The caches and the limiters
// have their own locks, taken one at a time (docs/design/locking.md).
type failures struct {
	seed  maphash.Seed
	names *lru.Cache[uint64, *rate.Limiter]
	addrs *lru.Cache[netip.Addr, *rate.Limiter]
	known *lru.Cache[pairKey, *rate.Limiter]

	nameRate, addrRate   rate.Limit
	nameBurst, addrBurst int
}

func newFailures(l PasswordChecks) *failures {
	f := &failures{seed: maphash.MakeSeed(),
		nameRate: rate.Limit(float64(l.UserFailures) / l.FailureWindow.Seconds()), nameBurst: l.UserFailures,
		addrRate: rate.Limit(float64(l.AddressFailures) / l.FailureWindow.Seconds()), addrBurst: l.AddressFailures,
	}
	// lru.New fails only for a size below 1, which withDefaults excludes.
	f.names, _ = lru.New[uint64, *rate.Limiter](l.MaxTracked)
	f.addrs, _ = lru.New[netip.Addr, *rate.Limiter](l.MaxTracked)
	f.known, _ = lru.New[pairKey, *rate.Limiter](l.MaxTracked)
	return f
}

// attemptKey is an Attempt's keys in the maps.
type attemptKey struct {
	name uint64
	addr netip.Addr // zero: no address limit
}

func (f *failures) key(a Attempt) attemptKey {
	k := attemptKey{name: maphash.String(f.seed, a.Name)}
	if a.Addr.IsValid() {
		k.addr = addrKey(a.Addr)
	}
	return k
}

// Why a check was refused before hashing.
const (
	throttledNone = iota
	throttledName
	throttledAddr
	throttledKnown // a known pair's own bucket
)

// throttled reports whether k is over a failure limit at now, and which.
func (f *failures) throttled(now time.Time, k attemptKey) int {
	if k.addr.IsValid() {
		if l, ok := f.known.Get(pairKey(k)); ok {
			if l.TokensAt(now) < 1 {
				return throttledKnown
			}
			return throttledNone
		}
	}
	if l, ok := f.names.Peek(k.name); ok && l.TokensAt(now) < 1 {
		return throttledName
	}
	if k.addr.IsValid() {
		if l, ok := f.addrs.Peek(k.addr); ok && l.TokensAt(now) < 1 {
			return throttledAddr
		}
	}
	return throttledNone
}

// failed spends one failure of k's buckets.
func (f *failures) failed(now time.Time, k attemptKey) {
	if k.addr.IsValid() {
		if l, ok := f.known.Get(pairKey(k)); ok {
			l.AllowN(now, 1)
			return
		}
	}
	spend(f.names, k.name, f.nameRate, f.nameBurst, now)
	if k.addr.IsValid() {
		spend(f.addrs, k.addr, f.addrRate, f.addrBurst, now)
	}
}

// succeeded remembers that k's name authenticated from its address.
func (f *failures) succeeded(k attemptKey) {
	if k.addr.IsValid() && !f.known.Contains(pairKey(k)) {
		f.known.ContainsOrAdd(pairKey(k), rate.NewLimiter(f.nameRate, f.nameBurst))
	}
}

// spend takes one token from key's limiter in c, adding a full one first
// when key has none.
func spend[K comparable](c *lru.Cache[K, *rate.Limiter], key K, r rate.Limit, burst int, now time.Time) {
	l, ok := c.Get(key)
	if !ok {
		fresh := rate.NewLimiter(r, burst)
		prev, found, _ := c.PeekOrAdd(key, fresh)
		l = fresh
		if found {
			l = prev
		}
	}
	l.AllowN(now, 1)
}
