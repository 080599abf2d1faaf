// Package memstore is an in-memory broker.Store, for tests and for
// petrel serve --ephemeral: everything is lost when the process ends.
// Commit and Load deep-copy, so the broker may reuse its batches and
// mutate what Load reported. Reopen hands the content to a new Store,
// which lets tests restart a broker without a disk.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// ErrClosed is returned by Commit after Close.
var ErrClosed = errors.New("memstore: store closed")

// session is one stored session.
type session struct {
	rec     broker.StoredSession // lists unused
	subs    map[string]broker.StoredSubscription
	queue   map[uint64]*broker.StoredDelivery
	inbound map[uint16]uint64 // packet id -> write id (Op.Seq)
}

// Store is the in-memory broker.Store. It is safe for concurrent use.
type Store struct {
	mu struct {
		sync.Mutex
		closed   bool
		sessions map[string]*session
		retained map[string]*broker.StoredMessage
	}
}

var _ broker.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	s := &Store{}
	s.mu.sessions = make(map[string]*session)
	s.mu.retained = make(map[string]*broker.StoredMessage)
	return s
}

// Reopen returns a new, open Store holding a copy of s's content, as if s
// had been closed and its data opened again. s may be open or closed.
func (s *Store) Reopen() *Store {
	n := New()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sess := range s.mu.sessions {
		c := &session{
			rec:     sess.rec,
			subs:    maps.Clone(sess.subs),
			queue:   make(map[uint64]*broker.StoredDelivery, len(sess.queue)),
			inbound: maps.Clone(sess.inbound),
		}
		for seq, d := range sess.queue {
			c.queue[seq] = cloneDelivery(d)
		}
		n.mu.sessions[id] = c
	}
	for t, m := range s.mu.retained {
		n.mu.retained[t] = cloneMessage(m)
	}
	return n
}

// Load implements broker.Store: sessions by ClientID, each followed by
// its subscriptions by filter, its queue by Seq and its inbound ids, then
// retained messages by topic. What r receives is a deep copy. The store
// is locked while Load runs: r must not commit to it.
func (s *Store) Load(ctx context.Context, r broker.Restorer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(s.mu.sessions)) {
		if err := loadSession(id, s.mu.sessions[id], r); err != nil {
			return err
		}
	}
	for _, t := range slices.Sorted(maps.Keys(s.mu.retained)) {
		if err := r.RestoreRetained(cloneMessage(s.mu.retained[t])); err != nil {
			return err
		}
	}
	return nil
}

// loadSession reports one session and its records to r.
func loadSession(id string, sess *session, r broker.Restorer) error {
	rec := sess.rec
	rec.ClientID = id
	if rec.Will != nil {
		rec.Will = cloneMessage(rec.Will)
	}
	rec.Holder = cloneHolder(rec.Holder)
	if err := r.RestoreSession(&rec); err != nil {
		return err
	}
	for _, f := range slices.Sorted(maps.Keys(sess.subs)) {
		sub := sess.subs[f]
		if err := r.RestoreSubscription(id, &sub); err != nil {
			return err
		}
	}
	for _, seq := range slices.Sorted(maps.Keys(sess.queue)) {
		if err := r.RestoreDelivery(id, cloneDelivery(sess.queue[seq])); err != nil {
			return err
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(sess.inbound)) {
		if err := r.RestoreInbound(id, pid, sess.inbound[pid]); err != nil {
			return err
		}
	}
	return nil
}

// Commit implements broker.Store; durable makes no difference. Ops naming
// a ClientID without a session are ignored, except OpPutSession.
func (s *Store) Commit(b *broker.Batch, _ bool) error {
	if b == nil {
		return nil
	}
	if err := validate(b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	for i := range b.Ops {
		s.applyLocked(&b.Ops[i])
	}
	return nil
}

// validate checks b before anything is applied, so that a bad batch
// changes nothing.
func validate(b *broker.Batch) error {
	for i := range b.Ops {
		op := &b.Ops[i]
		var missing string
		switch op.Kind {
		case broker.OpPutSession:
			if op.Session == nil {
				missing = "Session"
			}
		case broker.OpPutSubscription:
			if op.Sub == nil {
				missing = "Sub"
			}
		case broker.OpEnqueue, broker.OpSetInflight:
			if op.Delivery == nil {
				missing = "Delivery"
			}
		case broker.OpPutRetained:
			if op.Retained == nil {
				missing = "Retained"
			}
		case broker.OpDeleteSession, broker.OpDeleteSubscription, broker.OpDequeue,
			broker.OpPutInbound, broker.OpDeleteInbound, broker.OpDeleteRetained:
		default:
			return fmt.Errorf("memstore: op %d: unknown kind %d", i, op.Kind)
		}
		if missing != "" {
			return fmt.Errorf("memstore: op %d: kind %d without %s", i, op.Kind, missing)
		}
	}
	return nil
}

func (s *Store) applyLocked(op *broker.Op) {
	switch op.Kind {
	case broker.OpPutRetained:
		s.mu.retained[op.Retained.Topic] = cloneMessage(op.Retained)
		return
	case broker.OpDeleteRetained:
		delete(s.mu.retained, op.Topic)
		return
	}
	sess := s.mu.sessions[op.ClientID]
	if op.Kind == broker.OpPutSession {
		if sess == nil {
			sess = &session{
				subs:    make(map[string]broker.StoredSubscription),
				queue:   make(map[uint64]*broker.StoredDelivery),
				inbound: make(map[uint16]uint64),
			}
			s.mu.sessions[op.ClientID] = sess
		}
		sess.rec = broker.StoredSession{
			Version:        op.Session.Version,
			ExpiryInterval: op.Session.ExpiryInterval,
			DisconnectedAt: op.Session.DisconnectedAt,
			WillDelay:      op.Session.WillDelay,
		}
		if op.Session.Will != nil {
			sess.rec.Will = cloneMessage(op.Session.Will)
		}
		sess.rec.Holder = cloneHolder(op.Session.Holder)
		return
	}
	if sess == nil {
		return
	}
	switch op.Kind {
	case broker.OpDeleteSession:
		delete(s.mu.sessions, op.ClientID)
	case broker.OpPutSubscription:
		sess.subs[op.Sub.Filter] = *op.Sub
	case broker.OpDeleteSubscription:
		delete(sess.subs, op.Filter)
	case broker.OpEnqueue:
		sess.queue[op.Delivery.Seq] = cloneDelivery(op.Delivery)
	case broker.OpSetInflight:
		if d := sess.queue[op.Delivery.Seq]; d != nil {
			d.PacketID, d.State = op.Delivery.PacketID, op.Delivery.State
		}
	case broker.OpDequeue:
		delete(sess.queue, op.Seq)
	case broker.OpPutInbound:
		sess.inbound[op.PacketID] = op.Seq
	case broker.OpDeleteInbound:
		delete(sess.inbound, op.PacketID)
	}
}

// Close implements broker.Store. A second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.closed = true
	return nil
}

func cloneDelivery(d *broker.StoredDelivery) *broker.StoredDelivery {
	c := *d
	c.SubIDs = slices.Clone(d.SubIDs)
	c.Msg = *cloneMessage(&d.Msg)
	return &c
}

func cloneMessage(m *broker.StoredMessage) *broker.StoredMessage {
	c := *m
	c.Topic = strings.Clone(m.Topic)
	c.Payload = slices.Clone(m.Payload)
	c.Properties = cloneProperties(m.Properties)
	return &c
}

func cloneProperties(p *packet.Properties) *packet.Properties {
	if p == nil {
		return nil
	}
	c := *p
	c.CorrelationData = slices.Clone(p.CorrelationData)
	c.AuthenticationData = slices.Clone(p.AuthenticationData)
	c.SubscriptionIdentifiers = slices.Clone(p.SubscriptionIdentifiers)
	c.UserProperties = slices.Clone(p.UserProperties)
	return &c
}

// cloneHolder returns a copy of h sharing nothing with it; nil for nil.
func cloneHolder(h *broker.StoredHolder) *broker.StoredHolder {
	if h == nil {
		return nil
	}
	c := *h
	c.Roles = slices.Clone(h.Roles)
	c.Attrs = maps.Clone(h.Attrs)
	return &c
}
