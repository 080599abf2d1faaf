package broker

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/retain"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
	"github.com/petrel-mqtt/petrel/packet"
)

// The admin API's view of subscriptions and retained messages, and its
// publishes (see admin.go).

// SubscriptionQuery selects subscriptions: those of the sessions Sessions
// selects (Tenant, AnyTenant, ClientPrefix; OnlineOnly and the page
// fields are ignored), with filter Filter when set, or matching topic
// name Topic when set. Results come in (tenant, client id, filter) order
// after the After triple, at most Limit.
type SubscriptionQuery struct {
	Sessions SessionQuery
	// ClientID, when set, names one session (with Sessions.Tenant).
	ClientID string
	Filter   string
	Topic    string
	HasAfter bool
	// AfterTenant, AfterClient and AfterFilter name the last subscription
	// of the previous page.
	AfterTenant, AfterClient, AfterFilter string
	Limit                                 int
}

// subscriptionScanWindows bounds the session walks one Subscriptions call
// makes: sessions without a matching subscription cost a walk of the
// session map per window, so a page may come back short, with more to
// follow, rather than make one request walk the map for ever.
const subscriptionScanWindows = 8

// Subscriptions returns a page of the subscriptions q selects and, when
// more may follow, where the next page starts (q's After fields). A page
// can be shorter than Limit and still be followed by more
// (subscriptionScanWindows); next then names a session with an empty
// Filter: the page ends after all of that session's subscriptions.
func (b *Broker) Subscriptions(q SubscriptionQuery) (page []SubscriptionInfo, next *SubscriptionInfo) {
	limit := max(q.Limit, 1)
	after := SubscriptionInfo{Tenant: q.AfterTenant, ClientID: q.AfterClient, Filter: q.AfterFilter}
	keep := func(si *SubscriptionInfo) bool {
		if q.Filter != "" && si.Filter != q.Filter {
			return false
		}
		if q.Topic != "" {
			_, inner := splitShared(si.Filter)
			if !topic.Match(inner, q.Topic) {
				return false
			}
		}
		return !q.HasAfter || subLess(&after, si)
	}
	// full cuts a page that holds more than limit.
	full := func() ([]SubscriptionInfo, *SubscriptionInfo) {
		page = page[:limit]
		last := page[limit-1]
		return page, &last
	}
	sessionSubs := func(tenant, client string) {
		info, ok := b.Session(tenant, client)
		if !ok || (!q.Sessions.AnyTenant && info.Tenant != q.Sessions.Tenant) ||
			!strings.HasPrefix(info.ClientID, q.Sessions.ClientPrefix) {
			return
		}
		for i := range info.Subs {
			if keep(&info.Subs[i]) {
				page = append(page, info.Subs[i])
			}
		}
	}
	if q.ClientID != "" {
		sessionSubs(q.Sessions.Tenant, q.ClientID)
		if len(page) > limit {
			return full()
		}
		return page, nil
	}
	sq := q.Sessions
	sq.OnlineOnly, sq.Limit, sq.HasAfter = false, limit, false
	if q.HasAfter {
		// Pages of sessions start strictly after the cursor's session:
		// what is left of its own subscriptions comes first, unless the
		// cursor says it is done (an empty filter).
		sq.HasAfter, sq.AfterTenant, sq.AfterClient = true, q.AfterTenant, q.AfterClient
		if q.AfterFilter != "" {
			sessionSubs(q.AfterTenant, q.AfterClient)
		}
	}
	for w := 0; w < subscriptionScanWindows && len(page) <= limit; w++ {
		refs := b.pageSessions(sq)
		for _, r := range refs {
			for _, si := range subscriptionsOf(r) {
				if keep(&si) {
					page = append(page, si)
				}
			}
		}
		if len(page) > limit {
			return full()
		}
		if len(refs) <= sq.Limit { // the walk saw the last session
			return page, nil
		}
		last := refs[len(refs)-1]
		sq.HasAfter, sq.AfterTenant, sq.AfterClient = true, last.tenant, last.client
	}
	if len(page) > limit {
		return full()
	}
	return page, &SubscriptionInfo{Tenant: sq.AfterTenant, ClientID: sq.AfterClient}
}

// RetainedInfo is one retained message.
type RetainedInfo struct {
	Topic   string
	Payload []byte
	QoS     byte
	// Expiry is when a 5.0 message expiry interval runs out; zero for
	// never.
	Expiry time.Time
	// Properties are the 5.0 properties kept with it (content type,
	// response topic, user properties...), nil for none.
	Properties *packet.Properties
}

func retainedInfo(topic string, m *session.Message) RetainedInfo {
	return RetainedInfo{Topic: topic, Payload: m.Payload, QoS: m.QoS, Expiry: m.Expiry, Properties: m.Properties}
}

// Retained returns the retained messages whose topics match filter (a
// valid topic filter; "#" for all but the $ topics), in topic order after
// topic after ("" from the start), at most limit, and whether more
// follow. Expired messages are left out. The payloads are the broker's
// own: the caller must not modify them.
func (b *Broker) Retained(filter, after string, limit int) (page []RetainedInfo, more bool, err error) {
	if err := topic.ValidateFilter(filter); err != nil {
		return nil, false, err
	}
	limit = max(limit, 1)
	now := b.opts().Now()
	// Keep the limit+1 smallest topics after after: a bounded max-heap,
	// not a sort of every match.
	h := &itemHeap{}
	for _, it := range b.retained.Match(filter, nil) {
		if (after != "" && it.Topic <= after) || it.Value.Expired(now) {
			continue
		}
		if h.Len() == limit+1 {
			if it.Topic >= (*h)[0].Topic {
				continue
			}
			heap.Pop(h)
		}
		heap.Push(h, it)
	}
	items := []retain.Item[*session.Message](*h)
	slices.SortFunc(items, func(a, b retain.Item[*session.Message]) int { return strings.Compare(a.Topic, b.Topic) })
	if len(items) > limit {
		items, more = items[:limit], true
	}
	page = make([]RetainedInfo, len(items))
	for i, it := range items {
		page[i] = retainedInfo(it.Topic, it.Value)
	}
	return page, more, nil
}

// itemHeap is a max-heap of retained items by topic.
type itemHeap []retain.Item[*session.Message]

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].Topic > h[j].Topic }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(retain.Item[*session.Message])) }
func (h *itemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// RetainedMessage returns the retained message of topic name, and false
// when there is none (or it expired).
func (b *Broker) RetainedMessage(name string) (RetainedInfo, bool) {
	m, ok := b.retained.Get(name)
	if !ok || m.Expired(b.opts().Now()) {
		return RetainedInfo{}, false
	}
	return retainedInfo(name, m), true
}

// DeleteRetained removes the retained message of topic name, from the
// store first: on a store error nothing is removed. It reports whether
// there was one.
func (b *Broker) DeleteRetained(name string) (bool, error) {
	if _, ok := b.retained.Get(name); !ok {
		return false, nil
	}
	if err := b.commitOne(Op{Kind: OpDeleteRetained, Topic: name}, true); err != nil {
		return true, err
	}
	b.retained.Delete(name)
	if b.fabric != nil && !isSysTopic(name) {
		b.fabric.Retain(&session.Message{Topic: name, Retain: true}) // an empty payload clears it everywhere
	}
	b.log.Info("retained message deleted by an administrator", "topic", name)
	return true, nil
}

// AdminMessage is a message an administrator publishes (PublishAs).
type AdminMessage struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Expiry is the 5.0 message expiry interval; 0 for none.
	Expiry time.Duration
	// Properties are 5.0 properties to forward (content type, response
	// topic, correlation data, user properties, payload format); nil for
	// none. Topic alias, subscription identifier and message expiry are
	// not taken from it.
	Properties *packet.Properties
}

// Errors of PublishAs.
var (
	// ErrPublishNotAuthorized: the Authorizer refused the publish.
	ErrPublishNotAuthorized = errors.New("broker: publish not authorized")
	// ErrBadTopic: the topic is not a valid topic name within the limits,
	// or is a $SYS topic.
	ErrBadTopic = errors.New("broker: invalid topic name")
)

// PublishAs publishes m as id, authorized by the Authorizer as a client's
// PUBLISH is (Options.Authorizer.CanPublish), and returns the number of
// sessions it was queued for. QoS 1/2 deliveries to persistent sessions
// and a retained message are on disk when it returns without error. The
// message's origin is the broker (no session), so No Local never hides it.
func (b *Broker) PublishAs(id *Identity, m AdminMessage) (int, error) {
	o := b.opts()
	if m.QoS > 2 {
		return 0, fmt.Errorf("%w: QoS %d", ErrBadTopic, m.QoS)
	}
	// A topic name without wildcards or U+0000 [MQTT-4.7.3-1]
	// [MQTT-4.7.3-2], within the configured limits.
	if err := b.validateName(m.Topic); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadTopic, err)
	}
	if strings.HasPrefix(m.Topic, "$SYS") {
		return 0, fmt.Errorf("%w: $SYS topics are the broker's own", ErrBadTopic)
	}
	if id == nil {
		id = &Identity{}
	}
	if !o.Authorizer.CanPublish(id, m.Topic, m.QoS, m.Retain) {
		return 0, ErrPublishNotAuthorized
	}
	msg := session.NewMessage(m.Topic, m.Payload)
	msg.QoS, msg.Retain = m.QoS, m.Retain
	if m.Properties != nil && !m.Properties.IsZero() {
		props := *m.Properties
		props.Clear(packet.PropTopicAlias)
		props.Clear(packet.PropSubscriptionIdentifier)
		props.Clear(packet.PropMessageExpiryInterval)
		if !props.IsZero() {
			msg.Properties = &props
		}
	}
	if m.Expiry > 0 {
		msg.Expiry = o.Now().Add(m.Expiry)
	}
	var extra Batch
	if m.Retain && b.store != nil {
		extra.Add(retainOp(msg))
	}
	n, err := b.publish(msg, &extra, m.QoS > 0 || m.Retain)
	if err != nil {
		return n, err
	}
	if m.Retain { // [MQTT-3.3.1-5]
		b.retainMessage(msg)
	}
	return n, nil
}
