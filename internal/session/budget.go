package session

import "sync/atomic"

// Budget bounds the bytes held for all the sessions of a broker together:
// their queued messages, their messages in flight (sent, not yet
// acknowledged) and, through Charge, what the broker's connection writers
// hold encoded. A session whose Limits name the Budget refuses a message
// that would take it over Max, by its overflow policy, like a full queue.
// Safe for concurrent use.
//
// Updates go to one of budgetStripes counters, chosen per session or
// connection (Stripe), each on its own cache line, and are carried to the
// shared total once a stripe holds a grain either way (Max/256, at most
// 64 KiB): cores do not pass one cache line back and forth per message.
// The bound is checked against the total and the charging stripe, so it
// may be passed by what the other stripes have not carried yet: less than
// budgetStripes grains, Max/16 (1 MiB at most). Held adds the stripes in.
type Budget struct {
	max     atomic.Int64 // 0: no bound
	grain   atomic.Int64
	total   atomic.Int64
	dropped atomic.Uint64
	next    atomic.Uint32
	_       [128 - 36]byte
	stripes [budgetStripes]budgetStripe
}

const (
	budgetStripes  = 16
	budgetMaxGrain = 64 << 10
)

type budgetStripe struct {
	n atomic.Int64
	_ [128 - 8]byte
}

// NewBudget returns a Budget of max bytes (0: no bound, only counting).
func NewBudget(max int64) *Budget {
	b := new(Budget)
	b.SetMax(max)
	return b
}

// SetMax changes the bound; what is held already stays.
func (b *Budget) SetMax(max int64) {
	grain := int64(budgetMaxGrain)
	if max > 0 {
		grain = min(grain, max/256)
	}
	b.grain.Store(grain)
	b.max.Store(max)
}

// Max returns the bound (0: none).
func (b *Budget) Max() int64 { return b.max.Load() }

// Held returns the bytes held now.
func (b *Budget) Held() int64 {
	n := b.total.Load()
	for i := range b.stripes {
		n += b.stripes[i].n.Load()
	}
	return n
}

// Dropped returns how many messages were refused or dropped because the
// budget was full.
func (b *Budget) Dropped() uint64 { return b.dropped.Load() }

// Stripe returns the stripe a new holder (a session, a connection) is to
// charge, round robin.
func (b *Budget) Stripe() int { return int(b.next.Add(1) % budgetStripes) }

// Charge adds n bytes (negative: releases them) to the bytes held, on
// stripe.
func (b *Budget) Charge(stripe int, n int) {
	s := &b.stripes[stripe%budgetStripes]
	if v, g := s.n.Add(int64(n)), b.grain.Load(); v >= g || v <= -g {
		b.total.Add(s.n.Swap(0))
	}
}

// full reports whether size more bytes, charged on stripe, would exceed
// the bound.
func (b *Budget) full(stripe, size int) bool {
	max := b.max.Load()
	return max > 0 && b.total.Load()+b.stripes[stripe%budgetStripes].n.Load()+int64(size) > max
}
