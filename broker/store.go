package broker

import (
	"context"
	"errors"
	"fmt"
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
// through Commit; it reads the store only in Load, at startup, turning
// each record into session state as Load reports it.
//
// Contract details both implementations keep (storetest checks them):
// operations naming a ClientID that has no session are ignored, except
// OpPutSession; a session's Seq numbers only grow, a Seq is never reused
// within a session; the message of an AwaitPubcomp delivery may or may not
// be kept.
type Store interface {
	// Load reports everything stored to r, record by record, from one
	// consistent view of the store, and returns nil or the first error
	// (r's included: an error from r stops Load). The broker calls it
	// once, before serving, and turns each record into its own state as it
	// comes, so that no second copy of the whole store is ever held. Order:
	// a session (r.RestoreSession) comes before every subscription,
	// delivery and inbound packet id naming it; a session's deliveries come
	// by Seq, ascending, and its inbound ids ascending; retained messages
	// come in any order. A corrupt or truncated record is an error naming
	// its key.
	Load(ctx context.Context, r Restorer) error
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

// ErrStoreNoQuorum is wrapped by a replicated Store's error for a write
// that no quorum acknowledged in time (its leader died; another is being
// elected). It may be stored or not: the broker writes the same batch
// again, for a while, where doing so is harmless (retryNoQuorum).
var ErrStoreNoQuorum = errors.New("store: no quorum acknowledged the write")

// RidingStore is a Store that can make a batch durable with the next
// sync other writes ask for, instead of one of its own: CommitRiding
// returns once b is on disk as Commit(b, true) would, after a sync that
// may come later than Commit's (a few milliseconds) but is shared. The
// broker commits this way what only it waits on: the records of
// outbound QoS 2 deliveries before their PUBRELs.
type RidingStore interface {
	Store
	CommitRiding(b *Batch) error
}

// Restorer receives a Store's content from Load, one record at a time, on
// the goroutine that called Load. The record a method is passed (the
// pointer) is valid only during the call and may be reused by the store
// afterwards; what the record refers to (strings, payloads, properties,
// subscription identifiers, a session's will) is the Restorer's to keep:
// the store never touches it again. An error stops Load, which returns it.
type Restorer interface {
	// RestoreSession receives a session's record: every field but its
	// lists (Subscriptions, Queue, InboundQoS2), which are empty.
	RestoreSession(s *StoredSession) error
	// RestoreSubscription receives a subscription of session clientID.
	RestoreSubscription(clientID string, sub *StoredSubscription) error
	// RestoreDelivery receives a queued or inflight delivery of session
	// clientID.
	RestoreDelivery(clientID string, d *StoredDelivery) error
	// RestoreInbound receives an inbound QoS 2 packet id of session
	// clientID, awaiting PUBREL, with the write id its OpPutInbound
	// carried (Op.Seq; 0 for none, and always from a store that does not
	// keep it).
	RestoreInbound(clientID string, packetID uint16, write uint64) error
	// RestoreRetained receives a retained message.
	RestoreRetained(m *StoredMessage) error
}

// StoredState is the whole content of a Store, as LoadAll collects it.
type StoredState struct {
	Sessions []*StoredSession // in the order Load reported them
	Retained []*StoredMessage // in the order Load reported them
}

// LoadAll collects everything s.Load reports into one StoredState, for
// tools and tests. It holds the whole store in memory at once, which the
// broker's start-up avoids by restoring record by record. It fails when
// the store breaks Load's order contract: a record naming a session not
// reported before it, deliveries or inbound ids out of order.
func LoadAll(ctx context.Context, s Store) (*StoredState, error) {
	c := &collector{byID: make(map[string]*StoredSession)}
	if err := s.Load(ctx, c); err != nil {
		return nil, err
	}
	return &c.st, nil
}

// collector is the Restorer of LoadAll.
type collector struct {
	st   StoredState
	byID map[string]*StoredSession
}

func (c *collector) RestoreSession(s *StoredSession) error {
	if c.byID[s.ClientID] != nil {
		return fmt.Errorf("broker: store reported session %q twice", s.ClientID)
	}
	cp := *s
	cp.Subscriptions, cp.Queue, cp.InboundQoS2 = nil, nil, nil
	c.byID[s.ClientID] = &cp
	c.st.Sessions = append(c.st.Sessions, &cp)
	return nil
}

func (c *collector) session(clientID, what string) (*StoredSession, error) {
	if s := c.byID[clientID]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("broker: store reported %s of session %q before the session", what, clientID)
}

func (c *collector) RestoreSubscription(clientID string, sub *StoredSubscription) error {
	s, err := c.session(clientID, "a subscription")
	if err != nil {
		return err
	}
	s.Subscriptions = append(s.Subscriptions, *sub)
	return nil
}

func (c *collector) RestoreDelivery(clientID string, d *StoredDelivery) error {
	s, err := c.session(clientID, "a delivery")
	if err != nil {
		return err
	}
	if n := len(s.Queue); n > 0 && s.Queue[n-1].Seq >= d.Seq {
		return fmt.Errorf("broker: store reported delivery %d of session %q after %d", d.Seq, clientID, s.Queue[n-1].Seq)
	}
	s.Queue = append(s.Queue, *d)
	return nil
}

func (c *collector) RestoreInbound(clientID string, packetID uint16, write uint64) error {
	s, err := c.session(clientID, "an inbound packet id")
	if err != nil {
		return err
	}
	if n := len(s.InboundQoS2); n > 0 && s.InboundQoS2[n-1] >= packetID {
		return fmt.Errorf("broker: store reported inbound packet id %d of session %q after %d", packetID, clientID, s.InboundQoS2[n-1])
	}
	s.InboundQoS2 = append(s.InboundQoS2, packetID)
	if write != 0 {
		if s.InboundWrites == nil {
			s.InboundWrites = make(map[uint16]uint64)
		}
		s.InboundWrites[packetID] = write
	}
	return nil
}

func (c *collector) RestoreRetained(m *StoredMessage) error {
	cp := *m
	c.st.Retained = append(c.st.Retained, &cp)
	return nil
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
	WillDelay uint32
	// Holder is the identity that set Will, recorded with it so that the
	// will is authorized again, for that identity under the policy in
	// force, when it is sent after a restart. Nil without a will, and in
	// records written before holders were stored (their will is not
	// published unless the Authorizer is AllowAll).
	Holder *StoredHolder
	// LastSeq is the highest Seq of a delivery ever stored for the
	// session, kept after the delivery is removed; 0 when the store does
	// not keep it (a SessionJournal does: a session adopted on another
	// node is caught up from the cluster's message log after it).
	LastSeq uint64
	// The session's lists, filled by LoadAll (Load reports them as
	// records of their own and leaves them empty).
	Subscriptions []StoredSubscription
	Queue         []StoredDelivery // by Seq, ascending
	InboundQoS2   []uint16         // packet ids awaiting PUBREL, ascending
	// InboundWrites maps those of InboundQoS2 stored with a write id (a
	// SessionJournal's: see Op.Seq) to it; nil for none.
	InboundWrites map[uint16]uint64
}

// StoredHolder is an Identity as stored with a will: what an Authorizer
// needs to decide the will's publish again (the client id is the
// session's). A token's roles are those it carried; an Authorizer that
// looks its users up again (auth.Service) applies their roles in force.
type StoredHolder struct {
	Tenant, Username  string
	Roles             []string
	Method, Principal string
	Attrs             map[string]string // nil for none
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
	AwaitPubrec                       // QoS 2 sent (written by earlier versions: a stored QoS 2 delivery's packet id is now derived from its Seq, session.PacketIDFor)
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
	// Seq: OpDequeue's delivery. OpPutInbound's write id in a cluster
	// with a message log: the id the log stores the publish under
	// (FabricLog.LogOnce), 0 for none; a store that is not a
	// SessionJournal may drop it.
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
