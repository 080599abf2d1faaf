package broker

import (
	"context"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// Store keeps what must survive a restart: persistent sessions with their
// subscriptions, their queued and inflight QoS 1/2 messages and inbound
// QoS 2 packet ids, and retained messages. Messages for clean sessions
// never reach it. Implementations: internal/store/memstore and
// internal/store/diskstore, both checked by internal/store/storetest.
//
// The broker keeps the live state in memory and writes every change
// through Commit; it reads the store only in Load, at startup.
//
// Contract details both implementations keep (storetest checks them):
// operations naming a ClientID that has no session are ignored, except
// OpPutSession; a session's Seq numbers only grow, a Seq is never reused
// within a session; the message of an AwaitPubcomp delivery may or may not
// be kept.
type Store interface {
	// Load returns everything stored. The broker calls it once, before
	// serving. A corrupt or truncated record is an error naming its key.
	Load(ctx context.Context) (*StoredState, error)
	// Commit applies b's operations atomically and in order. With durable
	// it returns only once they are on disk as the store's sync mode
	// promises; concurrent commits are grouped into one write and one
	// sync. It is safe for concurrent use and keeps no reference to b or
	// to anything b points to after it returns. An error means nothing of
	// b was applied (disk full, store closed).
	Commit(b *Batch, durable bool) error
	// Close flushes and releases the store; Commit fails afterwards.
	Close() error
}

// StoredState is the whole content of a Store.
type StoredState struct {
	Sessions []*StoredSession
	Retained []*StoredMessage // by topic
}

// NoExpiry is the session expiry interval meaning "never" (5.0's
// 0xFFFFFFFF); 3.x persistent sessions are stored with it.
const NoExpiry = 0xFFFFFFFF

// StoredSession is one persistent session.
type StoredSession struct {
	// ClientID is the session key, SessionKey(tenant, client id): the bare
	// client id for tenant "" (also every record written before tenants
	// were keyed), else tenant, NUL, client id. SplitSessionKey splits it.
	ClientID       string
	Version        packet.Version
	ExpiryInterval uint32    // seconds; NoExpiry for never
	DisconnectedAt time.Time // when it last went offline; zero when not recorded
	// Will is the will of the session's connection, while it may still be
	// published: the connection is open (a crash ends it abnormally) or its
	// 5.0 Will Delay Interval is running. Nil for none.
	Will *StoredMessage
	// WillDelay is the will's 5.0 Will Delay Interval in seconds.
	WillDelay     uint32
	Subscriptions []StoredSubscription
	Queue         []StoredDelivery // by Seq, ascending
	InboundQoS2   []uint16         // packet ids awaiting PUBREL, ascending
}

// StoredSubscription is one subscription of a persistent session.
type StoredSubscription struct {
	Filter            string // as subscribed, $share/group/ prefix included
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32
}

// InflightState is where a stored QoS 1/2 delivery stands.
type InflightState byte

// The inflight states of a StoredDelivery.
const (
	Queued       InflightState = iota // not sent yet (PacketID 0)
	AwaitPuback                       // QoS 1 sent
	AwaitPubrec                       // QoS 2 sent
	AwaitPubcomp                      // QoS 2 PUBREC received, PUBREL sent; Msg no longer needed
)

// StoredDelivery is one QoS 1/2 message queued or in flight for a session.
type StoredDelivery struct {
	Seq      uint64 // per session, increasing
	Msg      StoredMessage
	QoS      byte // delivery QoS
	Retain   bool // retain flag of the delivery
	SubIDs   []uint32
	PacketID uint16 // non-zero once sent
	State    InflightState
	// Share and ShareFilter name the share group it came through: Share
	// is the group scoped to the session's tenant (SessionKey(tenant,
	// group)).
	Share, ShareFilter string
}

// StoredMessage is an application message as stored.
type StoredMessage struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties *packet.Properties // 5.0 properties, nil for none
	Expiry     time.Time          // zero for none
	Origin     string             // the publisher's session key (No Local)
}

// OpKind is the kind of one Batch operation.
type OpKind uint8

// The operations a Batch carries. Each names the fields of Op it uses.
const (
	// OpPutSession creates or updates a session's record (ClientID,
	// Session: Version, ExpiryInterval, DisconnectedAt, Will, WillDelay;
	// its lists are ignored). Updating keeps the session's subscriptions
	// and queue.
	OpPutSession OpKind = iota + 1
	// OpDeleteSession removes a session with its subscriptions, queue and
	// inbound ids (ClientID). A later OpPutSession starts a new, empty one.
	OpDeleteSession
	// OpPutSubscription adds or replaces a subscription (ClientID, Sub).
	OpPutSubscription
	// OpDeleteSubscription removes one (ClientID, Filter).
	OpDeleteSubscription
	// OpEnqueue stores a delivery (ClientID, Delivery).
	OpEnqueue
	// OpSetInflight records that a stored delivery was sent or moved on
	// (ClientID, Delivery: Seq, PacketID, State); a delivery whose state
	// becomes AwaitPubcomp may drop its message.
	OpSetInflight
	// OpDequeue removes a delivery (ClientID, Seq).
	OpDequeue
	// OpPutInbound records an inbound QoS 2 packet id (ClientID, PacketID).
	OpPutInbound
	// OpDeleteInbound releases one (ClientID, PacketID).
	OpDeleteInbound
	// OpPutRetained stores a retained message (Retained).
	OpPutRetained
	// OpDeleteRetained removes the retained message of Topic.
	OpDeleteRetained
)

// Op is one operation of a Batch.
type Op struct {
	Kind     OpKind
	ClientID string // the session key (StoredSession.ClientID)
	Session  *StoredSession
	Sub      *StoredSubscription
	Filter   string
	Delivery *StoredDelivery
	Seq      uint64
	PacketID uint16
	Retained *StoredMessage
	Topic    string
}

// Batch is a list of operations committed together.
type Batch struct {
	Ops []Op
}

// Add appends op and returns b.
func (b *Batch) Add(op Op) *Batch {
	b.Ops = append(b.Ops, op)
	return b
}

// Len returns the number of operations.
func (b *Batch) Len() int { return len(b.Ops) }

// Reset empties b for reuse.
func (b *Batch) Reset() {
	clear(b.Ops)
	b.Ops = b.Ops[:0]
}
