package session

import (
	"sync"
	"sync/atomic"
)

// OverflowPolicy says what a full queue does with a new message.
type OverflowPolicy int

// The overflow policies.
const (
	DropNew    OverflowPolicy = iota // refuse the new message (default, as HiveMQ)
	DropOldest                       // drop the oldest queued message to make room
)

// Limits bound a session's outbound queue. Zero MaxMessages or MaxBytes
// means no limit of that kind. MaxBytes, the Quota's and the Budget's
// bytes count the messages queued and those in flight (sent, awaiting
// their acknowledgement), but not the retained messages owed to a new
// subscription (EnqueueRetained), which the retained store holds anyway.
type Limits struct {
	MaxMessages      int
	MaxBytes         int
	Policy           OverflowPolicy
	QueueQoS0Offline bool    // queue QoS 0 messages while the client is offline
	Quota            *Quota  // the tenant's shared bound; nil for none
	Budget           *Budget // the broker's bound for all sessions; nil for none
}

// OutKind is the kind of an outbound item.
type OutKind byte

// The outbound item kinds.
const (
	OutPublish OutKind = iota
	OutPubrel
)

// Outbound is one packet the connection writer is to send for the session.
type Outbound struct {
	Kind     OutKind
	PacketID uint16 // 0 for QoS 0
	Dup      bool
	Delivery Delivery // for OutPublish
}

type inflightState byte

const (
	awaitPuback inflightState = iota
	awaitPubrec
	awaitPubcomp
)

type inflight struct {
	d     Delivery
	seq   uint64 // the delivery's Seq, kept after PUBREC drops the message
	state inflightState
	maybe bool   // restored from the queue as maybe sent (Restore)
	held  uint32 // bytes charged for the message (0: none, a retained one)
}

// Stats is a snapshot of a session's counters.
type Stats struct {
	Queued        int    // messages waiting in the queue (retained backlog included)
	QueuedBytes   int    // bytes counted against the byte limit: queued and in flight
	Inflight      int    // QoS 1/2 messages sent and not yet acknowledged
	Dropped       uint64 // messages dropped by a queue bound (messages, bytes, tenant), under the overflow policy
	DroppedQoS0   uint64 // QoS 0 messages dropped while offline
	Subscriptions int
}

// Session is the state of one client session. All methods are safe for
// concurrent use: publishers call Enqueue from any goroutine while the
// connection's writer calls TakeBatch and its reader the acknowledgement
// methods. No method blocks or calls out while holding the lock, except
// that the Waker returned by Enqueue is for the caller to run.
type Session struct {
	// ID is the client identifier, scoped to its tenant by the broker
	// (broker.SessionKey); it never changes.
	ID     string
	limits Limits

	dropped     atomic.Uint64
	droppedQoS0 atomic.Uint64
	persistent  atomic.Bool  // its QoS 1/2 deliveries are written to the store
	expiresAt   atomic.Int64 // UnixNano when an offline session expires, 0: not recorded (expiry.go)

	// Guard is the broker's, not the session's: it serializes the changes
	// to the session's subscriptions that are made in the session and in
	// the broker's subscription index together (SUBSCRIBE, UNSUBSCRIBE,
	// authorizing again, dropping the session), and guards Owner and
	// Ended. No Session method takes it; it is taken before Session.mu,
	// never while holding it.
	Guard struct {
		sync.Mutex
		// Owner is the identity that holds or last held the session (the
		// broker's type; the session never looks inside), nil when not
		// known: a session restored from the store.
		Owner any
		// Ended is set when the session is dropped: nothing adds its
		// subscriptions to the index afterwards.
		Ended bool
	}

	mu struct {
		sync.Mutex
		online    bool
		wake      Waker
		subs      map[string]Subscription
		q         queue
		retained  []Delivery          // retained messages owed to new subscriptions
		inflight  map[uint16]inflight // by value: no allocation per message
		order     []uint16            // inflight packet ids in send order from orderHead (may hold acked ids)
		orderHead int
		resend    []uint16 // inflight ids to send again after a reconnect
		nextPID   uint16   // the last packet id nextPIDLocked gave
		// cooling: packet ids of stored QoS 2 deliveries completed by
		// PUBCOMP whose removal from the store is not yet known durable,
		// with the delivery's Seq; not given again until it is (pids.go).
		cooling map[uint16]uint64
		// restoring: Restore has put a delivery of the session in the
		// queue; those after it go there too, behind it.
		restoring bool
		// restoredSent: deliveries Restore put in the inflight window as
		// maybe sent (pids.go).
		restoredSent int
		maxInflight  int
		inbound      map[uint16]uint64 // QoS 2 packet ids received, PUBREL pending -> write id (InboundWrite)
		nextSeq      uint64
		// inflightBytes is what the inflight messages hold (their held).
		inflightBytes int
		// discarded: the broker let the session go (Discard); nothing is
		// queued any more.
		discarded bool
		tenant    *Tenant // counts the drops too; nil for none
		// For the broker's drop reports (TakeDropReport): dropped as of the
		// last report, the last bound that dropped, and whether drops
		// happened since.
		reported   uint64
		lastReason DropReason
		reportDue  bool
	}
}

// New returns an empty, offline session.
func New(id string, limits Limits) *Session {
	s := &Session{ID: id, limits: limits}
	s.mu.q.quota = limits.Quota
	if limits.Budget != nil {
		s.mu.q.budget, s.mu.q.stripe = limits.Budget, limits.Budget.Stripe()
	}
	s.mu.maxInflight = 1
	return s
}

// Waker is the attached connection: Wake starts its writer. The caller of
// Enqueue may also recognise its own connection type and start the writer
// later, in a batch (the broker does so for the connections a reader's
// publishes were queued for).
type Waker interface{ Wake() }

// Attach marks the session online with the connection's Waker and
// inflight window. Every message left unacknowledged by a previous
// connection is scheduled to be sent again, in its original order: PUBLISH
// with DUP set, or PUBREL for QoS 2 messages already received by the client
// [MQTT-4.4.0-1].
func (s *Session) Attach(wake Waker, maxInflight int) {
	if maxInflight < 1 {
		maxInflight = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.online = true
	s.mu.wake = wake
	s.mu.maxInflight = maxInflight
	s.mu.resend = s.mu.resend[:0]
	for _, pid := range s.compactOrderLocked() {
		s.mu.resend = append(s.mu.resend, pid)
	}
}

// Detach marks the session offline. Queued QoS 0 messages are dropped unless
// the limits say to keep them.
func (s *Session) Detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.online = false
	s.mu.wake = nil
	s.mu.resend = s.mu.resend[:0]
	if !s.limits.QueueQoS0Offline {
		keep := s.mu.q.emptied()
		n := 0
		for s.mu.q.len() > 0 {
			d := s.mu.q.pop()
			if d.QoS > 0 {
				keep.push(d)
			} else {
				n++
			}
		}
		s.mu.q = keep
		s.countDropLocked(n, DropOfflineQoS0)
	}
	s.mu.retained = nil
}

// Online reports whether a connection is attached.
func (s *Session) Online() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.online
}

// Enqueued is what Enqueue did with a delivery.
type Enqueued struct {
	Accepted bool
	// Dropped counts the messages dropped: the new one when refused, older
	// ones under drop-oldest. DroppedSeqs lists the stored ones (Seq != 0)
	// among them, for the caller to remove from the store.
	Dropped     int
	DroppedSeqs []uint64
	// Reason is why they were dropped (NotDropped when none was).
	Reason DropReason
	// Report is true for the first drop by a queue bound since the last
	// TakeDropReport: the caller is to have the drops reported.
	Report bool
	// Wake is the attached connection's Waker when the caller must wake it
	// (after Enqueue returned) to start the writer.
	Wake Waker
}

// Enqueue queues d for delivery without blocking. A full queue applies the
// overflow policy; every drop is counted, in the session and its tenant.
func (s *Session) Enqueue(d Delivery) (r Enqueued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	drop := func(x Delivery) {
		r.Dropped++
		if x.Seq != 0 {
			r.DroppedSeqs = append(r.DroppedSeqs, x.Seq)
		}
	}
	if s.mu.discarded {
		return r // let go while the message was routed to it
	}
	defer func() {
		r.Report = s.countDropLocked(r.Dropped, r.Reason)
		if r.Reason == DropMemoryBudget && r.Dropped > 0 {
			s.limits.Budget.dropped.Add(uint64(r.Dropped))
		}
	}()
	if !s.mu.online && d.QoS == 0 && !s.limits.QueueQoS0Offline {
		r.Reason = DropOfflineQoS0
		drop(d)
		return r
	}
	size := d.Msg.Size()
	if r.Reason = s.fullLocked(size); r.Reason != NotDropped {
		switch {
		case s.limits.Policy != DropOldest || s.mu.q.len() == 0:
			drop(d)
			return r
		case r.Reason == DropMemoryBudget:
			// Other sessions may hold the budget: this one's oldest make
			// room for the new message only if they free as much as it
			// takes, and the broker then holds no more than before.
			if s.mu.q.bytes < size {
				drop(d)
				return r
			}
			for freed := 0; freed < size; {
				x := s.mu.q.pop()
				freed += x.Msg.Size()
				drop(x)
			}
		default:
			for s.mu.q.len() > 0 && s.fullLocked(size).bySession() {
				drop(s.mu.q.pop())
			}
			// Larger than the byte limit alone, or the budget is full too.
			if full := s.fullLocked(size); full != NotDropped {
				r.Reason = full
				drop(d)
				return r
			}
		}
	}
	s.mu.q.push(d)
	r.Accepted = true
	if s.mu.online {
		r.Wake = s.mu.wake
	}
	return r
}

// fullLocked reports which bound, if any, leaves no room for one more
// message of size bytes: the session's own bounds and its tenant's
// first, the broker's budget last.
func (s *Session) fullLocked(size int) DropReason {
	switch {
	case s.limits.MaxMessages > 0 && s.mu.q.len() >= s.limits.MaxMessages:
		return DropQueueFull
	case s.limits.MaxBytes > 0 && s.mu.q.bytes+s.mu.inflightBytes+size > s.limits.MaxBytes:
		return DropQueueBytes
	case s.limits.Quota != nil && s.limits.Quota.full(size):
		return DropTenantQuota
	case s.limits.Budget != nil && s.limits.Budget.full(s.mu.q.stripe, size):
		return DropMemoryBudget
	}
	return NotDropped
}

// EnqueueRetained appends retained messages owed to a new subscription. They
// are not subject to the queue limits (a subscription gets every retained
// message, paced by the inflight window) and go out before the queue. The
// session takes ds over: the caller must not use it afterwards.
func (s *Session) EnqueueRetained(ds []Delivery) (wake Waker) {
	if len(ds) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.discarded {
		return nil
	}
	if len(s.mu.retained) == 0 {
		s.mu.retained = ds // no copy of a large backlog
	} else {
		s.mu.retained = append(s.mu.retained, ds...)
	}
	if s.mu.online {
		return s.mu.wake
	}
	return nil
}

// TakeBatch appends up to max items to send to dst and returns it: first the
// packets owed after a reconnect, then retained messages for new
// subscriptions, then the queue. QoS 1 and 2 messages get a packet
// identifier and enter the inflight window; they stop at the window's limit
// so that order is kept.
func (s *Session) TakeBatch(dst []Outbound, max int) []Outbound {
	dst, _ = s.TakeBatchLimited(dst, BatchLimit{Items: max})
	return dst
}

// BatchLimit bounds what one TakeBatchLimited takes.
type BatchLimit struct {
	Items int // items at most
	// Bytes bounds the sizes (Message.Size) of the messages taken,
	// together; 0: no bound. The first message is taken whatever its
	// size, so that a writer always gets on, unless Strict.
	Bytes  int
	Strict bool
}

// TakeBatchLimited is TakeBatch within lim. more reports that it stopped
// at lim with something left that the inflight window would let through.
func (s *Session) TakeBatchLimited(dst []Outbound, lim BatchLimit) (_ []Outbound, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	max, taken, bytes := lim.Items, 0, 0
	// fits takes m's size into the batch's bytes, or reports it would not fit.
	fits := func(m *Message) bool {
		if lim.Bytes <= 0 || m == nil {
			return true
		}
		size := m.Size()
		if bytes+size > lim.Bytes && (taken > 0 || lim.Strict) {
			return false
		}
		bytes += size
		return true
	}
	// Resent messages count against the window too [MQTT-3.3.4-9]: those
	// still in resend have not been sent on this connection yet.
	for len(s.mu.resend) > 0 && len(s.mu.inflight)-len(s.mu.resend) < s.windowLocked() {
		pid := s.mu.resend[0]
		f, ok := s.mu.inflight[pid]
		if !ok {
			s.mu.resend = s.mu.resend[1:]
			continue
		}
		if max == 0 || !fits(f.d.Msg) {
			return dst, true
		}
		s.mu.resend = s.mu.resend[1:]
		if f.state == awaitPubcomp {
			dst = append(dst, Outbound{Kind: OutPubrel, PacketID: pid})
		} else {
			dst = append(dst, Outbound{Kind: OutPublish, PacketID: pid, Dup: true, Delivery: f.d})
		}
		max--
		taken++
	}
	if len(s.mu.resend) > 0 { // nothing overtakes a message owed again
		return dst, false
	}
	for len(s.mu.retained) > 0 {
		d := &s.mu.retained[0]
		if d.QoS > 0 && !s.admissibleLocked(d) {
			return dst, false
		}
		if max == 0 || !fits(d.Msg) {
			return dst, true
		}
		dst = append(dst, s.admitLocked(*d, false))
		s.mu.retained[0] = Delivery{}
		s.mu.retained = s.mu.retained[1:]
		if len(s.mu.retained) == 0 {
			s.mu.retained = nil
		}
		max--
		taken++
	}
	for s.mu.q.len() > 0 {
		d := s.mu.q.peek()
		if d.QoS > 0 && !s.admissibleLocked(d) {
			return dst, false
		}
		if max == 0 || !fits(d.Msg) {
			return dst, true
		}
		dst = append(dst, s.admitLocked(s.mu.q.pop(), true))
		max--
		taken++
	}
	return dst, false
}

// admitLocked turns d into an outbound publish, giving a QoS 1/2 message a
// packet identifier and an inflight slot (the caller checked there is
// one); charge says its bytes go on counting against the bounds while it
// is in flight (a queued message's; a retained one was never counted).
func (s *Session) admitLocked(d Delivery, charge bool) Outbound {
	if d.QoS == 0 {
		return Outbound{Kind: OutPublish, Delivery: d}
	}
	pid := s.pidForLocked(&d)
	f := inflight{d: d, seq: d.Seq, state: awaitPuback}
	if d.QoS == 2 {
		f.state = awaitPubrec
	}
	if charge {
		s.chargeLocked(&f)
	}
	if s.mu.inflight == nil { // made on first use: an idle session costs no maps
		s.mu.inflight = make(map[uint16]inflight)
	}
	s.mu.inflight[pid] = f
	s.mu.order = append(s.mu.order, pid)
	return Outbound{Kind: OutPublish, PacketID: pid, Delivery: d}
}

// chargeLocked counts f's message against the byte bounds while in flight.
func (s *Session) chargeLocked(f *inflight) {
	size := f.d.Msg.Size()
	f.held = uint32(size)
	s.mu.inflightBytes += size
	if q := s.mu.q.quota; q != nil {
		q.add(0, size)
	}
	if b := s.mu.q.budget; b != nil {
		b.Charge(s.mu.q.stripe, size)
	}
}

// releaseLocked stops counting what f's message held; f is changed to
// hold nothing.
func (s *Session) releaseLocked(f *inflight) {
	if f.held == 0 {
		return
	}
	size := int(f.held)
	f.held = 0
	s.mu.inflightBytes -= size
	if q := s.mu.q.quota; q != nil {
		q.add(0, -size)
	}
	if b := s.mu.q.budget; b != nil {
		b.Charge(s.mu.q.stripe, -size)
	}
}

// compactOrderLocked drops acknowledged ids from the send order and returns it.
func (s *Session) compactOrderLocked() []uint16 {
	o := s.mu.order[:0]
	for _, pid := range s.mu.order[s.mu.orderHead:] {
		if _, ok := s.mu.inflight[pid]; ok {
			o = append(o, pid)
		}
	}
	s.mu.order, s.mu.orderHead = o, 0
	return o
}

// HasPending reports whether TakeBatch would return something now.
func (s *Session) HasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.resend) > 0 {
		return len(s.mu.inflight)-len(s.mu.resend) < s.windowLocked()
	}
	var head *Delivery
	if len(s.mu.retained) > 0 {
		head = &s.mu.retained[0]
	} else {
		head = s.mu.q.peek()
	}
	return head != nil && (head.QoS == 0 || s.admissibleLocked(head))
}

// removeLocked deletes an inflight entry and trims the send order when the
// acknowledged id is at its head (the common, in-order case).
func (s *Session) removeLocked(pid uint16) {
	if f, ok := s.mu.inflight[pid]; ok {
		s.releaseLocked(&f)
	}
	delete(s.mu.inflight, pid)
	for s.mu.orderHead < len(s.mu.order) {
		if _, ok := s.mu.inflight[s.mu.order[s.mu.orderHead]]; ok {
			break
		}
		s.mu.orderHead++
	}
	if s.mu.orderHead == len(s.mu.order) {
		// All acknowledged: start again at the front, keeping the array.
		s.mu.order, s.mu.orderHead = s.mu.order[:0], 0
	} else if len(s.mu.order)-s.mu.orderHead > 4*len(s.mu.inflight)+64 || s.mu.orderHead > 1024 {
		s.compactOrderLocked()
	}
}

// Puback completes a QoS 1 delivery. It reports whether pid was awaiting a
// PUBACK (an unknown id is ignored by the caller) and the delivery's Seq.
func (s *Session) Puback(pid uint16) (seq uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.mu.inflight[pid]
	if !ok || f.state != awaitPuback {
		return 0, false
	}
	s.removeLocked(pid)
	return f.seq, true
}

// Abandon removes an inflight delivery that will not be sent (expired, or
// too large for the client), as if it had been acknowledged, and returns
// its Seq.
func (s *Session) Abandon(pid uint16) (seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.mu.inflight[pid]; ok {
		s.removeLocked(pid)
		return f.seq
	}
	return 0
}

// TakeShared removes and returns the QoS 1/2 messages that came through
// shared subscriptions and are queued or in flight but not yet received by
// the client, oldest first, so they can go to another member of their
// group. QoS 0 ones are dropped.
func (s *Session) TakeShared() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Delivery
	for _, pid := range s.compactOrderLocked() {
		f := s.mu.inflight[pid]
		if f.d.Share != "" && f.state != awaitPubcomp {
			out = append(out, f.d)
			s.releaseLocked(&f)
			delete(s.mu.inflight, pid)
		}
	}
	s.compactOrderLocked()
	keep := s.mu.q.emptied()
	for s.mu.q.len() > 0 {
		d := s.mu.q.pop()
		switch {
		case d.Share == "":
			keep.push(d)
		case d.QoS > 0:
			out = append(out, d)
		}
	}
	s.mu.q = keep
	return out
}

// PubrecState reports what Pubrec would for pid without changing
// anything: whether pid is a QoS 2 delivery in flight, its Seq, and
// whether a PUBREC would move it (it awaits its first PUBREC). A caller
// that must store the new state first calls Pubrec once it is stored, so
// that the session never says more than the store.
func (s *Session) PubrecState(pid uint16) (seq uint64, first, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.mu.inflight[pid]
	if !ok || f.state == awaitPuback {
		return 0, false, false
	}
	return f.seq, f.state == awaitPubrec, true
}

// Pubrec records the client's PUBREC for a QoS 2 delivery: the message is
// now released (it is never sent again) and the PUBREL is owed
// [MQTT-4.3.3-1]. It reports whether pid is a QoS 2 delivery in flight,
// in which case the caller sends PUBREL (also for a repeated PUBREC), the
// delivery's Seq, and whether this PUBREC moved it (first: false for a
// repeated one, whose new state the caller recorded already).
func (s *Session) Pubrec(pid uint16) (seq uint64, first, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.mu.inflight[pid]
	if !ok || f.state == awaitPuback {
		return 0, false, false
	}
	first = f.state == awaitPubrec
	f.state = awaitPubcomp
	s.releaseLocked(&f)
	f.d = Delivery{}
	s.mu.inflight[pid] = f
	return f.seq, first, true
}

// Pubcomp completes a QoS 2 delivery. It reports whether pid was awaiting
// a PUBCOMP, and the delivery's Seq.
func (s *Session) Pubcomp(pid uint16) (seq uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.mu.inflight[pid]
	if !ok || f.state != awaitPubcomp {
		return 0, false
	}
	s.removeLocked(pid)
	if f.seq != 0 {
		s.coolLocked(pid, f.seq)
	}
	return f.seq, true
}

// ReceiveQoS2 records an inbound QoS 2 PUBLISH. It returns false when pid
// is already awaiting its PUBREL: the message was delivered onward once and
// must not be again [MQTT-4.3.3-2].
func (s *Session) ReceiveQoS2(pid uint16) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.inbound == nil {
		s.mu.inbound = make(map[uint16]uint64)
	}
	if _, dup := s.mu.inbound[pid]; dup {
		return false
	}
	s.mu.inbound[pid] = 0
	return true
}

// SetInboundWrite records, for inbound QoS 2 packet id pid awaiting its
// PUBREL, the id under which a cluster's message log was asked to store
// its message, while the write's outcome is unknown (0: known stored or
// none). A resend of the PUBLISH is then written again under the same
// id, which the log stores once, instead of being taken for a duplicate
// of what the log may not hold [MQTT-4.3.3-2].
func (s *Session) SetInboundWrite(pid uint16, write uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.inbound[pid]; ok {
		s.mu.inbound[pid] = write
	}
}

// InboundWrite returns pid's write id (SetInboundWrite), 0 for none.
func (s *Session) InboundWrite(pid uint16) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.inbound[pid]
}

// AwaitingPubrel reports whether inbound QoS 2 packet id pid awaits its PUBREL.
func (s *Session) AwaitingPubrel(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.mu.inbound[pid]
	return ok
}

// InboundQoS2 reports how many inbound QoS 2 packet ids await PUBREL.
func (s *Session) InboundQoS2() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.inbound)
}

// Pubrel releases an inbound QoS 2 packet id; it reports whether it was held.
func (s *Session) Pubrel(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.mu.inbound[pid]
	delete(s.mu.inbound, pid)
	return ok
}

// Subscribe records sub, replacing a subscription with the same filter; it
// reports whether one was replaced.
func (s *Session) Subscribe(sub Subscription) (replaced bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, replaced = s.mu.subs[sub.Filter]
	if s.mu.subs == nil {
		s.mu.subs = make(map[string]Subscription)
	}
	s.mu.subs[sub.Filter] = sub
	return replaced
}

// Unsubscribe removes the subscription to filter; it reports whether it existed.
func (s *Session) Unsubscribe(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.mu.subs[filter]
	delete(s.mu.subs, filter)
	return ok
}

// SubscriptionCount returns the number of subscriptions.
func (s *Session) SubscriptionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.subs)
}

// Subscribed reports whether the session has a subscription to filter.
func (s *Session) Subscribed(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.mu.subs[filter]
	return ok
}

// Subscriptions returns a copy of the session's subscriptions.
func (s *Session) Subscriptions() []Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Subscription, 0, len(s.mu.subs))
	for _, sub := range s.mu.subs {
		out = append(out, sub)
	}
	return out
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Queued:        s.mu.q.len() + len(s.mu.retained),
		QueuedBytes:   s.mu.q.bytes + s.mu.inflightBytes,
		Inflight:      len(s.mu.inflight),
		Dropped:       s.dropped.Load(),
		DroppedQoS0:   s.droppedQoS0.Load(),
		Subscriptions: len(s.mu.subs),
	}
}
