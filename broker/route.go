package broker

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// subKey identifies one subscriber in the trie: a session, and the share
// group for a $share subscription ("" otherwise), so that a session may hold
// a plain and shared subscriptions to the same filter. group is the
// tenant-scoped group key (groupKey), so that the same group name in two
// tenants is two groups.
type subKey struct {
	s     *session.Session
	group string
}

// subscriber is the trie value: the subscription's options.
type subscriber struct {
	filter            string // inner filter (without $share/group/)
	qos               byte
	noLocal           bool
	retainAsPublished bool
	subIDs            []uint32 // the 5.0 subscription identifier as sent (nil for none), made once
	shareKey          string   // group key + "\x00" + filter for a $share subscription, made once
	// deny lists the filters whose topics this subscription does not
	// deliver (SubscribeDecision.Deny, shared, never written to); nil,
	// the common case, costs one comparison per message.
	deny []string
}

// denies reports whether the subscription must not deliver a message
// published to name: a deny filter of its authorization matches it.
func (sub *subscriber) denies(name string) bool {
	return sub.deny != nil && topic.MatchAny(sub.deny, name)
}

func newSubscriber(filter, group string, qos byte, noLocal, retainAsPublished bool, subID uint32, deny []string) subscriber {
	sub := subscriber{filter: filter, qos: qos, noLocal: noLocal, retainAsPublished: retainAsPublished, deny: deny}
	if subID != 0 {
		sub.subIDs = []uint32{subID}
	}
	sub.shareKey = shareKeyOf(group, filter)
	return sub
}

// shareKeyOf is the shareKey of a subscription to filter in share group
// group (its groupKey: tenant and name); "" for a plain subscription.
func shareKeyOf(group, filter string) string {
	if group == "" {
		return ""
	}
	return group + "\x00" + filter
}

type entry = topic.Entry[subKey, subscriber]

var entryPool = sync.Pool{New: func() any { e := make([]entry, 0, 64); return &e }}

// maxShareCounters bounds the round-robin counters sharedGroups keeps:
// clients choose group names freely, and a group's counter outlives its
// last member, so without a bound a client cycling through names would
// grow the map for ever.
const maxShareCounters = 1 << 14

// sharedGroups holds the round-robin position of each share group, keyed
// by a hash of its shareKey (tenant, group, filter: at most 8 bytes a
// group whatever the filter's length). Past maxShareCounters groups the
// counters start over: every group's rotation restarts, and each message
// still goes to one member.
type sharedGroups struct {
	mu   sync.Mutex
	seed maphash.Seed
	next map[uint64]uint64 // maphash of shareKey -> deliveries so far
}

func (g *sharedGroups) pick(k string) uint64 {
	h := maphash.String(g.seed, k)
	g.mu.Lock()
	n, ok := g.next[h]
	if !ok && len(g.next) >= maxShareCounters {
		clear(g.next)
	}
	g.next[h] = n + 1
	g.mu.Unlock()
	return n
}

// routing collects, while one message is routed, the deliveries to
// persistent sessions that must be written to the store before they are
// queued, and the store removals the routing caused (dropped deliveries).
type routing struct {
	staged  []staged
	batch   Batch
	cleanup Batch
	seen    map[*session.Session]struct{} // distinctPlain's scratch
	from    *conn                         // the publishing reader, while route runs (see route)
	queued  int                           // deliveries queued (see enqueue)
	refused int                           // deliveries a queue bound refused
	remote  bool                          // the message goes to other nodes too (route, with a fabric)
	logSeq  uint64                        // the cluster log's sequence of the message (routeLogged); 0 live
	logHere bool                          // routeLogged: this node wrote it (its clean sessions had it live)
	inbound bool                          // DeliverRemote: published on another node
}

// distinctPlain reports whether ents are plain subscriptions of distinct
// sessions, which need no merging.
func (rt *routing) distinctPlain(ents []entry) bool {
	if rt.seen == nil {
		rt.seen = make(map[*session.Session]struct{}, len(ents))
	}
	defer clear(rt.seen)
	for _, e := range ents {
		if e.Key.group != "" {
			return false
		}
		if _, dup := rt.seen[e.Key.s]; dup {
			return false
		}
		rt.seen[e.Key.s] = struct{}{}
	}
	return true
}

type staged struct {
	s *session.Session
	d session.Delivery
}

var routingPool = sync.Pool{New: func() any { return new(routing) }}

func (rt *routing) release() {
	clear(rt.staged)
	rt.staged = rt.staged[:0]
	rt.batch.Reset()
	rt.cleanup.Reset()
	rt.queued, rt.refused, rt.remote, rt.logSeq, rt.logHere, rt.inbound = 0, 0, false, 0, false, false
	routingPool.Put(rt)
}

// writeStaged writes what a routed message must have on disk before its
// deliveries to persistent sessions are queued: extra (its retained
// message, its inbound QoS 2 id) and the staged deliveries, in one commit
// (durable when asked). With nothing to write it does nothing. The caller
// queues the deliveries (queueStaged) once it returned without an error.
func (b *Broker) writeStaged(rt *routing, extra *Batch, durable bool) error {
	if len(rt.staged) == 0 && (extra == nil || extra.Len() == 0) {
		return nil
	}
	rt.appendWrites(&rt.batch, extra)
	return b.commit(&rt.batch, durable)
}

// appendWrites adds to batch extra's operations and the store writes of
// the staged deliveries.
func (rt *routing) appendWrites(batch, extra *Batch) {
	if extra != nil {
		batch.Ops = append(batch.Ops, extra.Ops...)
	}
	for i := range rt.staged {
		st := &rt.staged[i]
		batch.Add(Op{Kind: OpEnqueue, ClientID: st.s.ID, Delivery: storedDelivery(&st.d)})
	}
}

// queueStaged queues the staged deliveries once their write returned, and
// commits the removals the routing caused.
func (b *Broker) queueStaged(rt *routing) {
	for _, st := range rt.staged {
		b.enqueue(rt, st.s, st.d)
	}
	if rt.cleanup.Len() > 0 {
		// A removal that fails to be written is logged and counted by
		// commit; the delivery comes back at restart, as at-least-once allows.
		_ = b.commit(&rt.cleanup, false)
	}
}

// publish routes msg to every matching session without blocking on any
// of them (see route), for the publishers that are not a connection's
// reader: wills, the admin API, $SYS. Deliveries to persistent sessions
// (QoS 1/2) are written to the store first, in one commit with extra
// (durable when asked), and queued only once it returned; on a store
// error they are not queued and the error is returned. With a fabric the
// message then goes to the other nodes (never a $SYS one). It returns the
// number of local sessions the message was queued for.
func (b *Broker) publish(msg *session.Message, extra *Batch, durable bool) (int, error) {
	rt, n := b.route(msg, nil)
	defer rt.release()
	if err := b.writeStaged(rt, extra, durable); err != nil {
		return n - len(rt.staged), err
	}
	b.queueStaged(rt)
	b.forward(msg)
	b.logUnwaited(msg)
	return n, nil
}

// route matches msg and delivers it to the sessions that need no store
// write: each session gets it once, at the highest QoS of its matching
// subscriptions [MQTT-3.3.5-1]; each share group gets it once. The
// deliveries to persistent sessions are staged in the returned routing,
// for writeStaged then queueStaged. n counts both. from is the publishing
// connection when route runs in its reader goroutine: the writers of the
// connections the message was queued for are then started by that reader
// once it has handled what it read (see conn.flushWakes), so that a burst
// of publishes wakes each writer once; nil wakes them at once.
func (b *Broker) route(msg *session.Message, from *conn) (rt *routing, n int) {
	rt = routingPool.Get().(*routing)
	rt.from = from
	ep := entryPool.Get().(*[]entry)
	var hint uint32
	if from != nil {
		hint = from.stripe
	}
	ents := b.subs.MatchHint(msg.Topic, hint, (*ep)[:0])
	if b.fabric != nil {
		// The share groups get it through the fabric (Forward), which
		// balances them across the nodes; the publisher cannot know
		// whether other nodes have subscribers (ackCode).
		ents = keepShare(ents, "")
		rt.remote = true
	}
	n = b.deliverEntries(rt, msg, ents)
	clear(ents)
	*ep = ents[:0]
	entryPool.Put(ep)
	rt.from = nil // staged deliveries may be queued by another goroutine: they wake at once
	return rt, n
}

// deliverEntries delivers msg to the matched subscriptions ents.
func (b *Broker) deliverEntries(rt *routing, msg *session.Message, ents []entry) int {
	switch len(ents) {
	case 0:
		return 0
	case 1:
		if ents[0].Key.group == "" {
			return b.deliver(rt, msg, ents[0].Key.s, ents[0].Value, nil)
		}
		return b.deliverShared(rt, msg, ents)
	}
	return b.deliverMany(rt, msg, ents)
}

// deliverMany merges overlapping subscriptions per session and hands each
// share group's entries to deliverShared.
func (b *Broker) deliverMany(rt *routing, msg *session.Message, ents []entry) int {
	if oneShareGroup(ents) { // the members of one share group: no sorting needed
		return b.deliverShared(rt, msg, ents)
	}
	if rt.distinctPlain(ents) { // the common fan-out: no sorting needed
		n := 0
		for _, e := range ents {
			n += b.deliver(rt, msg, e.Key.s, e.Value, nil)
		}
		return n
	}
	// Plain subscriptions first, grouped by session; shared ones after,
	// grouped by group and filter.
	slices.SortFunc(ents, func(x, y entry) int {
		if c := cmp.Compare(x.Key.group, y.Key.group); c != 0 {
			return c
		}
		if x.Key.group != "" {
			if c := cmp.Compare(x.Value.filter, y.Value.filter); c != 0 {
				return c
			}
		}
		return cmp.Compare(x.Key.s.ID, y.Key.s.ID)
	})
	n := 0
	i := 0
	for i < len(ents) && ents[i].Key.group == "" {
		j := i + 1
		for j < len(ents) && ents[j].Key.group == "" && ents[j].Key.s == ents[i].Key.s {
			j++
		}
		n += b.deliverMerged(rt, msg, ents[i:j])
		i = j
	}
	for i < len(ents) {
		j := i + 1
		for j < len(ents) && ents[j].Key.group == ents[i].Key.group && ents[j].Value.filter == ents[i].Value.filter {
			j++
		}
		n += b.deliverShared(rt, msg, ents[i:j])
		i = j
	}
	return n
}

// deliverMerged delivers once to a session matched by several filters, at
// the highest granted QoS, carrying every subscription identifier.
func (b *Broker) deliverMerged(rt *routing, msg *session.Message, ents []entry) int {
	if len(ents) == 1 {
		return b.deliver(rt, msg, ents[0].Key.s, ents[0].Value, nil)
	}
	var best subscriber
	var ids []uint32
	found := false
	for _, e := range ents {
		if (e.Value.noLocal && e.Key.s.ID == msg.Origin) || e.Value.denies(msg.Topic) {
			continue
		}
		if !found || e.Value.qos > best.qos {
			best.qos = e.Value.qos
		}
		best.retainAsPublished = best.retainAsPublished || e.Value.retainAsPublished
		ids = append(ids, e.Value.subIDs...)
		found = true
	}
	if !found {
		return 0
	}
	return b.deliver(rt, msg, ents[0].Key.s, best, ids)
}

// oneShareGroup reports whether ents are all members of one share group
// (same group, same filter).
func oneShareGroup(ents []entry) bool {
	k := ents[0].Value.shareKey
	if k == "" {
		return false
	}
	for _, e := range ents[1:] {
		if e.Value.shareKey != k {
			return false
		}
	}
	return true
}

// deliverShared gives the message to one member of a share group, round
// robin, preferring members that are online, among the members whose
// authorization lets them receive it (subscriber.denies).
func (b *Broker) deliverShared(rt *routing, msg *session.Message, members []entry) int {
	start := b.shared.pick(members[0].Value.shareKey)
	first := int(start % uint64(len(members)))
	pick := -1
	for k := 0; k < len(members); k++ {
		i := (first + k) % len(members)
		if members[i].Value.denies(msg.Topic) {
			continue
		}
		if pick < 0 {
			pick = i // the first that may receive it, online or not
		}
		if members[i].Key.s.Online() {
			pick = i
			break
		}
	}
	if pick < 0 {
		return 0
	}
	return b.deliverTo(rt, msg, members[pick])
}

// deliverTo delivers a shared-subscription message to the chosen member.
func (b *Broker) deliverTo(rt *routing, msg *session.Message, m entry) int {
	return b.deliverShare(rt, msg, m.Key.s, m.Value, m.Value.subIDs, m.Key.group)
}

// redistribute gives shared-subscription messages taken from a session
// that went away to other members of their groups, online ones first
// (5.0 section 4.8.2). Messages whose group has no other member are
// dropped and counted.
func (b *Broker) redistribute(ds []session.Delivery, gone *session.Session) {
	if len(ds) == 0 {
		return
	}
	rt := routingPool.Get().(*routing)
	defer rt.release()
	for _, d := range ds {
		if d.Seq != 0 {
			rt.cleanup.Add(Op{Kind: OpDequeue, ClientID: gone.ID, Seq: d.Seq})
		}
		ep := entryPool.Get().(*[]entry)
		ents := b.subs.Match(d.Msg.Topic, (*ep)[:0])
		members := ents[:0]
		for _, e := range ents {
			if e.Key.group == d.Share && e.Value.filter == d.ShareFilter && e.Key.s != gone {
				members = append(members, e)
			}
		}
		if len(members) == 0 || b.deliverShared(rt, d.Msg, members) == 0 {
			b.countDrop(dropNoShareMember, 1)
		}
		clear(ents)
		*ep = ents[:0]
		entryPool.Put(ep)
	}
	// A failed write is logged and counted by commit; the deliveries it
	// carried are not queued.
	if err := b.writeStaged(rt, nil, false); err == nil {
		b.queueStaged(rt)
	}
}

// deliver enqueues msg for s under sub's options. It never blocks: a full
// queue applies the overflow policy and the drop is counted.
func (b *Broker) deliver(rt *routing, msg *session.Message, s *session.Session, sub subscriber, ids []uint32) int {
	return b.deliverShare(rt, msg, s, sub, ids, "")
}

// deliverShare is deliver for a message that came through share group
// group ("" for none).
func (b *Broker) deliverShare(rt *routing, msg *session.Message, s *session.Session, sub subscriber, ids []uint32, group string) int {
	if (sub.noLocal && s.ID == msg.Origin) || sub.denies(msg.Topic) {
		return 0
	}
	if ids == nil {
		ids = sub.subIDs // shared by every delivery, never written to
	}
	d := session.Delivery{
		Msg:    msg,
		QoS:    min(msg.QoS, sub.qos),
		Retain: msg.Retain && sub.retainAsPublished, // [MQTT-3.3.1-9]
		SubIDs: ids,
	}
	if group != "" {
		d.Share, d.ShareFilter = group, sub.filter
	}
	if rt.logSeq != 0 {
		// The cluster's log delivers the QoS 1/2 plain deliveries of
		// persistent sessions, and of clean ones on a node other than
		// the publisher's (fabric_log.go).
		switch {
		case d.QoS == 0 || group != "":
			return 0
		case s.Persistent():
			return stageLogged(rt, s, d)
		case rt.logHere:
			return 0 // delivered live here
		}
		if !b.enqueue(rt, s, d) {
			return 0
		}
		return 1
	}
	if rt.inbound && b.flog != nil && group == "" && d.QoS > 0 {
		return 0 // the log brings it (above)
	}
	if d.QoS > 0 && b.store != nil && s.Persistent() {
		if b.flog != nil {
			if group == "" {
				return 0 // the cluster's log delivers it (liveSkips)
			}
			// A share group's delivery: live, not stored (its Seq would
			// not be the log's).
			if !b.enqueue(rt, s, d) {
				return 0
			}
			return 1
		}
		// Written to the store first (writeStaged), then queued (queueStaged).
		d.Seq = s.NextSeq()
		rt.staged = append(rt.staged, staged{s: s, d: d})
		return 1
	}
	if !b.enqueue(rt, s, d) {
		return 0
	}
	return 1
}

// enqueue queues d for s, wakes its writer and accounts for drops: the
// routing counts what was queued and refused (for the publisher's ack),
// the broker counts every drop and has the session's reported (noteDrops);
// stored ones are removed from the store with the routing's next commit.
func (b *Broker) enqueue(rt *routing, s *session.Session, d session.Delivery) bool {
	r := s.Enqueue(d)
	if r.Accepted {
		rt.queued++
	} else if r.Reason.ByLimit() {
		rt.refused++
	}
	if r.Report {
		b.noteDrops(s)
	}
	if r.Wake != nil {
		if to, ok := r.Wake.(*conn); ok && rt.from != nil {
			rt.from.deferWake(to)
		} else {
			r.Wake.Wake()
		}
	}
	if r.Dropped > 0 {
		b.countEnqueueDrops(r)
		for _, seq := range r.DroppedSeqs {
			rt.cleanup.Add(Op{Kind: OpDequeue, ClientID: s.ID, Seq: seq})
		}
	}
	return r.Accepted
}
