package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// A journal record is the body of one message on a session's subject of
// PETREL_SESSIONS (uv = uvarint, str = uv length + bytes):
//
//	byte       version (journalVersion)
//	byte       kind: recOps or recSnapshot
//	uv         epoch: the fencing token of the writer's claim
//	str        the session key (checked on read: subjects are hashes)
//	recOps:      uv n, n × op
//	recSnapshot: byte found (0, 1), [session record, uv n, n × subscription,
//	             uv n, n × delivery, uv n, n × inbound]
//
//	op:           byte broker.OpKind, then by kind: OpPutSession session
//	              record; OpDeleteSession nothing; OpPutSubscription
//	              subscription; OpDeleteSubscription str filter; OpEnqueue
//	              delivery; OpSetInflight uv seq, uv packet id, byte state;
//	              OpDequeue uv seq; OpPutInbound inbound; OpDeleteInbound
//	              uv packet id
//	inbound:      uv packet id, uv write (the log write id of its message,
//	              Op.Seq; 0 for none; version 1 records have no write)
//	session:      byte version, uv expiry, byte flags (1 disconnected at,
//	              2 will, 4 holder), [varint disconnected at, Unix ns],
//	              [uv will delay, message], [holder]
//	message:      byte flags (1 expiry), [varint expiry, Unix ns], str origin,
//	              uv n, n bytes: a 5.0 PUBLISH packet (topic, payload, QoS,
//	              retain, properties; packet id 1 when QoS > 0)
//	holder:       str tenant, str username, str method, str principal,
//	              uv n, n × str role, uv m, m × (str key, str value) by key
//	subscription: str filter, byte QoS, byte flags (1 no local, 2 retain
//	              as published), byte retain handling, uv subscription id
//	delivery:     uv seq, byte QoS, byte flags (1 retain), uv packet id,
//	              byte state, uv n, n × uv subscription id, str share,
//	              str share filter
//
// A delivery carries no message: its Seq is the sequence of its message
// in the cluster's message log (PETREL_MSGS), fetched when the session is
// adopted.
const journalVersion = 2

// journalVersionNoWrite is the version whose inbound ids carry no write
// id; read, never written.
const journalVersionNoWrite = 1

// Record kinds.
const (
	recOps      = 1
	recSnapshot = 2
)

// errJournalRecord reports a journal record this code did not write.
var errJournalRecord = errors.New("cluster: malformed session journal record")

// jdelivery is a delivery as the journal keeps it: no message, ~100 bytes
// with its map entry.
type jdelivery struct {
	seq         uint64
	subIDs      []uint32
	share       string
	shareFilter string
	pid         uint16
	qos         byte
	state       broker.InflightState
	retain      bool
}

// jstate is one session's state folded from its journal: the shadow a
// Journal keeps of the sessions it writes, and what LoadSession reports.
type jstate struct {
	// epoch is the highest epoch applied: records with a lower one are
	// ignored (a writer that lost the session to a newer claim).
	epoch   uint64
	sess    *broker.StoredSession // nil: no session; lists always empty
	subs    map[string]broker.StoredSubscription
	dels    map[uint64]*jdelivery
	inbound map[uint16]uint64 // packet id -> its message's log write id (0: none)
}

// entries is the number of the state's live records.
func (s *jstate) entries() int {
	if s.sess == nil {
		return 0
	}
	return 1 + len(s.subs) + len(s.dels) + len(s.inbound)
}

func (s *jstate) reset() {
	s.sess, s.subs, s.dels, s.inbound = nil, nil, nil, nil
}

// accept reports whether a record of epoch is applied, raising the
// state's epoch to it.
func (s *jstate) accept(epoch uint64) bool {
	if epoch < s.epoch {
		return false
	}
	s.epoch = epoch
	return true
}

// apply applies one operation (whose record was accepted). Operations
// naming no session are ignored, except OpPutSession (the Store
// contract).
func (s *jstate) apply(op *broker.Op) {
	if op.Kind == broker.OpPutSession {
		if s.sess == nil {
			s.subs = make(map[string]broker.StoredSubscription)
			s.dels = make(map[uint64]*jdelivery)
			s.inbound = make(map[uint16]uint64)
		}
		rec := *op.Session
		rec.ClientID = op.ClientID
		rec.Subscriptions, rec.Queue, rec.InboundQoS2 = nil, nil, nil
		if s.sess != nil {
			// LastSeq only grows: a record names the session's position
			// in the log when it was made, the deliveries raise it.
			rec.LastSeq = max(rec.LastSeq, s.sess.LastSeq)
		}
		s.sess = &rec
		return
	}
	if op.Kind == broker.OpDeleteSession {
		s.reset()
		return
	}
	if s.sess == nil {
		return
	}
	switch op.Kind {
	case broker.OpPutSubscription:
		s.subs[op.Sub.Filter] = *op.Sub
	case broker.OpDeleteSubscription:
		delete(s.subs, op.Filter)
	case broker.OpEnqueue:
		d := op.Delivery
		s.dels[d.Seq] = &jdelivery{seq: d.Seq, subIDs: d.SubIDs, share: d.Share, shareFilter: d.ShareFilter,
			pid: d.PacketID, qos: d.QoS, state: d.State, retain: d.Retain}
		s.sess.LastSeq = max(s.sess.LastSeq, d.Seq) // kept after the delivery is removed
	case broker.OpSetInflight:
		if d := s.dels[op.Delivery.Seq]; d != nil {
			d.pid, d.state = op.Delivery.PacketID, op.Delivery.State
		}
	case broker.OpDequeue:
		delete(s.dels, op.Seq)
	case broker.OpPutInbound:
		s.inbound[op.PacketID] = op.Seq
	case broker.OpDeleteInbound:
		delete(s.inbound, op.PacketID)
	}
}

// sessionOp reports whether k is an operation on a session (not on the
// retained set).
func sessionOp(k broker.OpKind) bool {
	return k >= broker.OpPutSession && k <= broker.OpDeleteInbound
}

// appendRecordHead appends a record's version, kind, epoch and key.
func appendRecordHead(dst []byte, kind byte, epoch uint64, key string) []byte {
	dst = append(dst, journalVersion, kind)
	dst = binary.AppendUvarint(dst, epoch)
	return appendString(dst, key)
}

// appendOps appends an ops record of ops (all naming key).
func appendOps(dst []byte, epoch uint64, key string, ops []*broker.Op) ([]byte, error) {
	dst = appendRecordHead(dst, recOps, epoch, key)
	dst = binary.AppendUvarint(dst, uint64(len(ops)))
	var err error
	for _, op := range ops {
		dst = append(dst, byte(op.Kind))
		switch op.Kind {
		case broker.OpPutSession:
			if dst, err = appendSessionRec(dst, op.Session); err != nil {
				return nil, err
			}
		case broker.OpDeleteSession:
		case broker.OpPutSubscription:
			dst = appendSub(dst, op.Sub)
		case broker.OpDeleteSubscription:
			dst = appendString(dst, op.Filter)
		case broker.OpEnqueue:
			d := op.Delivery
			dst = appendDelivery(dst, &jdelivery{seq: d.Seq, subIDs: d.SubIDs, share: d.Share, shareFilter: d.ShareFilter,
				pid: d.PacketID, qos: d.QoS, state: d.State, retain: d.Retain})
		case broker.OpSetInflight:
			dst = binary.AppendUvarint(dst, op.Delivery.Seq)
			dst = binary.AppendUvarint(dst, uint64(op.Delivery.PacketID))
			dst = append(dst, byte(op.Delivery.State))
		case broker.OpDequeue:
			dst = binary.AppendUvarint(dst, op.Seq)
		case broker.OpPutInbound:
			dst = binary.AppendUvarint(dst, uint64(op.PacketID))
			dst = binary.AppendUvarint(dst, op.Seq)
		case broker.OpDeleteInbound:
			dst = binary.AppendUvarint(dst, uint64(op.PacketID))
		default:
			return nil, fmt.Errorf("cluster: journal: operation %d is not a session's", op.Kind)
		}
	}
	return dst, nil
}

// appendSnapshot appends a snapshot record of s, written at epoch.
func appendSnapshot(dst []byte, key string, s *jstate, epoch uint64) ([]byte, error) {
	dst = appendRecordHead(dst, recSnapshot, epoch, key)
	if s.sess == nil {
		return append(dst, 0), nil
	}
	dst = append(dst, 1)
	var err error
	if dst, err = appendSessionRec(dst, s.sess); err != nil {
		return nil, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.subs)))
	for _, f := range slices.Sorted(maps.Keys(s.subs)) {
		sub := s.subs[f]
		dst = appendSub(dst, &sub)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.dels)))
	for _, seq := range slices.Sorted(maps.Keys(s.dels)) {
		dst = appendDelivery(dst, s.dels[seq])
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.inbound)))
	for _, pid := range slices.Sorted(maps.Keys(s.inbound)) {
		dst = binary.AppendUvarint(dst, uint64(pid))
		dst = binary.AppendUvarint(dst, s.inbound[pid])
	}
	return dst, nil
}

func appendSessionRec(dst []byte, s *broker.StoredSession) ([]byte, error) {
	var flags byte
	if !s.DisconnectedAt.IsZero() {
		flags |= 1
	}
	if s.Will != nil {
		flags |= 2
	}
	if s.Holder != nil {
		flags |= 4
	}
	if s.LastSeq != 0 {
		flags |= 8
	}
	dst = append(dst, byte(s.Version))
	dst = binary.AppendUvarint(dst, uint64(s.ExpiryInterval))
	dst = append(dst, flags)
	if flags&1 != 0 {
		dst = binary.AppendVarint(dst, s.DisconnectedAt.UnixNano())
	}
	if flags&8 != 0 {
		dst = binary.AppendUvarint(dst, s.LastSeq)
	}
	if flags&2 != 0 {
		dst = binary.AppendUvarint(dst, uint64(s.WillDelay))
		var err error
		if dst, err = appendStoredMessage(dst, s.Will); err != nil {
			return nil, err
		}
	}
	if h := s.Holder; h != nil {
		dst = appendString(dst, h.Tenant)
		dst = appendString(dst, h.Username)
		dst = appendString(dst, h.Method)
		dst = appendString(dst, h.Principal)
		dst = binary.AppendUvarint(dst, uint64(len(h.Roles)))
		for _, r := range h.Roles {
			dst = appendString(dst, r)
		}
		dst = binary.AppendUvarint(dst, uint64(len(h.Attrs)))
		for _, k := range slices.Sorted(maps.Keys(h.Attrs)) {
			dst = appendString(dst, k)
			dst = appendString(dst, h.Attrs[k])
		}
	}
	return dst, nil
}

// appendStoredMessage appends a will: its PUBLISH is encoded by the
// packet codec, which the decoder checks as it checks a client's.
func appendStoredMessage(dst []byte, m *broker.StoredMessage) ([]byte, error) {
	var flags byte
	if !m.Expiry.IsZero() {
		flags |= 1
	}
	dst = append(dst, flags)
	if flags&1 != 0 {
		dst = binary.AppendVarint(dst, m.Expiry.UnixNano())
	}
	dst = appendString(dst, m.Origin)
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: m.Topic, Payload: m.Payload}
	if m.QoS > 0 {
		p.PacketID = 1
	}
	if m.Properties != nil {
		p.Properties = *m.Properties
	}
	pk, err := p.Append(nil, packet.V5)
	if err != nil {
		return nil, fmt.Errorf("cluster: journal: encoding the will on %q: %w", m.Topic, err)
	}
	dst = binary.AppendUvarint(dst, uint64(len(pk)))
	return append(dst, pk...), nil
}

func appendSub(dst []byte, s *broker.StoredSubscription) []byte {
	dst = appendString(dst, s.Filter)
	var flags byte
	if s.NoLocal {
		flags |= 1
	}
	if s.RetainAsPublished {
		flags |= 2
	}
	dst = append(dst, s.QoS, flags, s.RetainHandling)
	return binary.AppendUvarint(dst, uint64(s.SubID))
}

func appendDelivery(dst []byte, d *jdelivery) []byte {
	dst = binary.AppendUvarint(dst, d.seq)
	var flags byte
	if d.retain {
		flags |= 1
	}
	dst = append(dst, d.qos, flags)
	dst = binary.AppendUvarint(dst, uint64(d.pid))
	dst = append(dst, byte(d.state))
	dst = binary.AppendUvarint(dst, uint64(len(d.subIDs)))
	for _, id := range d.subIDs {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	dst = appendString(dst, d.share)
	return appendString(dst, d.shareFilter)
}

// jrecord is a decoded record.
type jrecord struct {
	kind  byte
	epoch uint64
	key   string
	ops   []broker.Op // recOps
	snap  *jstate     // recSnapshot
}

// jreader reads a record; every length and count is checked against the
// bytes left, so a hostile record costs at most its own size.
type jreader struct{ envReader }

func (r *jreader) str() string { return string(r.bytes()) }

// count reads an element count, each element taking at least min bytes.
func (r *jreader) count(min int) int {
	n := r.uvarint()
	if r.err || n > uint64(len(r.b)/min) {
		r.err = true
		return 0
	}
	return int(n)
}

func (r *jreader) u16() uint16 {
	v := r.uvarint()
	if v > 0xFFFF {
		r.err = true
	}
	return uint16(v)
}

func (r *jreader) u32() uint32 {
	v := r.uvarint()
	if v > 0xFFFFFFFF {
		r.err = true
	}
	return uint32(v)
}

func (r *jreader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *jreader) qos() byte {
	q := r.byte()
	if q > 2 {
		r.err = true
	}
	return q
}

func (r *jreader) state() broker.InflightState {
	s := r.byte()
	if s > byte(broker.AwaitPubcomp) {
		r.err = true
	}
	return broker.InflightState(s)
}

// decodeRecord decodes a journal record. What it returns owns copies of
// everything (b is not kept).
func decodeRecord(b []byte) (*jrecord, error) {
	if len(b) < 2 || b[0] != journalVersion && b[0] != journalVersionNoWrite || (b[1] != recOps && b[1] != recSnapshot) {
		return nil, errJournalRecord
	}
	withWrite := b[0] != journalVersionNoWrite
	r := &jreader{envReader{b: b[2:]}}
	rec := &jrecord{kind: b[1]}
	rec.epoch = r.uvarint()
	rec.key = r.str()
	if r.err {
		return nil, errJournalRecord
	}
	if rec.kind == recOps {
		n := r.count(1)
		rec.ops = make([]broker.Op, 0, min(n, 1024))
		for range n {
			op := broker.Op{Kind: broker.OpKind(r.byte()), ClientID: rec.key}
			switch op.Kind {
			case broker.OpPutSession:
				op.Session = r.session(rec.key)
			case broker.OpDeleteSession:
			case broker.OpPutSubscription:
				sub := r.sub()
				op.Sub = &sub
			case broker.OpDeleteSubscription:
				op.Filter = r.str()
			case broker.OpEnqueue:
				d := r.delivery()
				op.Delivery = &broker.StoredDelivery{Seq: d.seq, QoS: d.qos, Retain: d.retain, SubIDs: d.subIDs,
					PacketID: d.pid, State: d.state, Share: d.share, ShareFilter: d.shareFilter}
			case broker.OpSetInflight:
				op.Delivery = &broker.StoredDelivery{Seq: r.uvarint(), PacketID: r.u16(), State: r.state()}
			case broker.OpDequeue:
				op.Seq = r.uvarint()
			case broker.OpPutInbound:
				op.PacketID = r.u16()
				if withWrite {
					op.Seq = r.uvarint()
				}
			case broker.OpDeleteInbound:
				op.PacketID = r.u16()
			default:
				return nil, errJournalRecord
			}
			if r.err {
				return nil, errJournalRecord
			}
			rec.ops = append(rec.ops, op)
		}
	} else {
		s := &jstate{epoch: rec.epoch}
		switch r.byte() {
		case 0:
		case 1:
			s.sess = r.session(rec.key)
			s.subs = make(map[string]broker.StoredSubscription)
			for range r.count(6) {
				sub := r.sub()
				s.subs[sub.Filter] = sub
			}
			s.dels = make(map[uint64]*jdelivery)
			for range r.count(8) {
				d := r.delivery()
				s.dels[d.seq] = &d
			}
			s.inbound = make(map[uint16]uint64)
			for range r.count(1) {
				pid := r.u16()
				var write uint64
				if withWrite {
					write = r.uvarint()
				}
				s.inbound[pid] = write
			}
		default:
			return nil, errJournalRecord
		}
		rec.snap = s
	}
	if r.err || len(r.b) != 0 {
		return nil, errJournalRecord
	}
	return rec, nil
}

func (r *jreader) session(key string) *broker.StoredSession {
	s := &broker.StoredSession{ClientID: key}
	v := packet.Version(r.byte())
	if v != packet.V31 && v != packet.V311 && v != packet.V5 {
		r.err = true
	}
	s.Version = v
	s.ExpiryInterval = r.u32()
	flags := r.byte()
	if flags&^15 != 0 {
		r.err = true
	}
	if flags&1 != 0 {
		s.DisconnectedAt = time.Unix(0, r.varint())
	}
	if flags&8 != 0 {
		s.LastSeq = r.uvarint()
	}
	if flags&2 != 0 {
		s.WillDelay = r.u32()
		s.Will = r.message()
	}
	if flags&4 != 0 {
		h := &broker.StoredHolder{Tenant: r.str(), Username: r.str(), Method: r.str(), Principal: r.str()}
		if n := r.count(1); n > 0 {
			h.Roles = make([]string, 0, n)
			for range n {
				h.Roles = append(h.Roles, r.str())
			}
		}
		if n := r.count(2); n > 0 {
			h.Attrs = make(map[string]string, n)
			for range n {
				k := r.str()
				h.Attrs[k] = r.str()
			}
		}
		s.Holder = h
	}
	if r.err {
		return nil
	}
	return s
}

func (r *jreader) message() *broker.StoredMessage {
	m := &broker.StoredMessage{}
	flags := r.byte()
	if flags&^1 != 0 {
		r.err = true
	}
	if flags&1 != 0 {
		m.Expiry = time.Unix(0, r.varint())
	}
	m.Origin = r.str()
	pk := r.bytes()
	if r.err {
		return nil
	}
	h, rem, n, err := packet.ParseFixedHeader(pk, 0)
	if err != nil || packet.Type(h>>4) != packet.PUBLISH || n+rem != len(pk) {
		r.err = true
		return nil
	}
	p, err := packet.Decode(h, pk[n:], packet.V5)
	if err != nil {
		r.err = true
		return nil
	}
	pub := p.(*packet.Publish)
	m.Topic, m.QoS, m.Retain = pub.Topic, pub.QoS, pub.Retain
	if len(pub.Payload) > 0 {
		m.Payload = bytes.Clone(pub.Payload)
	}
	if !pub.Properties.IsZero() {
		props := pub.Properties
		m.Properties = &props
	}
	return m
}

func (r *jreader) sub() broker.StoredSubscription {
	s := broker.StoredSubscription{Filter: r.str(), QoS: r.qos()}
	flags := r.byte()
	if flags&^3 != 0 {
		r.err = true
	}
	s.NoLocal, s.RetainAsPublished = flags&1 != 0, flags&2 != 0
	s.RetainHandling = r.byte()
	if s.RetainHandling > 2 {
		r.err = true
	}
	s.SubID = r.u32()
	return s
}

func (r *jreader) delivery() jdelivery {
	d := jdelivery{seq: r.uvarint(), qos: r.qos()}
	flags := r.byte()
	if flags&^1 != 0 {
		r.err = true
	}
	d.retain = flags&1 != 0
	d.pid = r.u16()
	d.state = r.state()
	if n := r.count(1); n > 0 {
		d.subIDs = make([]uint32, 0, n)
		for range n {
			d.subIDs = append(d.subIDs, r.u32())
		}
	}
	d.share = r.str()
	d.shareFilter = r.str()
	return d
}

// applyRecord applies a decoded record to s; it reports whether it was
// accepted (not fenced off by a newer epoch).
func (s *jstate) applyRecord(rec *jrecord) bool {
	if !s.accept(rec.epoch) {
		return false
	}
	if rec.kind == recSnapshot {
		*s = *rec.snap
		s.epoch = rec.epoch
		return true
	}
	for i := range rec.ops {
		s.apply(&rec.ops[i])
	}
	return true
}
