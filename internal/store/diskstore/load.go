package diskstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrel-mqtt/petrel/broker"
)

// outState is a stored outbound inflight record.
type outState struct {
	pid   uint16
	state broker.InflightState
}

// loader reads one snapshot of the store.
type loader struct {
	s       *Store
	snap    *pebble.Snapshot
	ctx     context.Context
	corrupt int
	n       int // records read, for the context check
}

// Load implements broker.Store: sessions by ClientID with their
// subscriptions by filter, queues by Seq and inbound ids ascending, and
// retained messages by topic, all from one snapshot. A corrupt record
// fails Load with an error naming its key, unless Options.SkipCorrupt;
// records of a session whose own record was skipped are skipped with it.
func (s *Store) Load(ctx context.Context) (*broker.StoredState, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	snap := s.db.NewSnapshot()
	defer snap.Close() //nolint:errcheck // a snapshot's Close only releases it
	l := &loader{s: s, snap: snap, ctx: ctx}
	st, err := l.load()
	if err != nil {
		return nil, err
	}
	s.corrupt = l.corrupt
	return st, nil
}

func (l *loader) load() (*broker.StoredState, error) {
	st := &broker.StoredState{}
	byCid := make(map[uint64]*broker.StoredSession)

	err := l.scan(tagSession, func(k, v []byte) error {
		cid, sess, err := decodeSession(v)
		if err != nil {
			return err
		}
		sess.ClientID = string(k[2:])
		byCid[cid] = sess
		st.Sessions = append(st.Sessions, sess)
		return nil
	})
	if err != nil {
		return nil, err
	}

	err = l.scan(tagSub, func(k, v []byte) error {
		if len(k) < 10 {
			return fmt.Errorf("%w: short key", ErrCorrupt)
		}
		sess := byCid[binary.BigEndian.Uint64(k[2:10])]
		if sess == nil {
			return nil // left by a skipped session record
		}
		sub, err := decodeSub(v, string(k[10:]))
		if err != nil {
			return err
		}
		sess.Subscriptions = append(sess.Subscriptions, sub)
		return nil
	})
	if err != nil {
		return nil, err
	}

	out := make(map[uint64]map[uint64]outState) // cid -> seq -> state
	err = l.scan(tagInflight, func(k, v []byte) error {
		if len(k) < 11 || (k[10] == inflightOut && len(k) != 19) || (k[10] == inflightIn && len(k) != 13) || k[10] > inflightIn {
			return fmt.Errorf("%w: malformed key", ErrCorrupt)
		}
		cid := binary.BigEndian.Uint64(k[2:10])
		sess := byCid[cid]
		if sess == nil {
			return nil
		}
		if k[10] == inflightIn {
			if err := decodeEmpty(v); err != nil {
				return err
			}
			sess.InboundQoS2 = append(sess.InboundQoS2, binary.BigEndian.Uint16(k[11:]))
			return nil
		}
		pid, state, err := decodeInflight(v)
		if err != nil {
			return err
		}
		m := out[cid]
		if m == nil {
			m = make(map[uint64]outState)
			out[cid] = m
		}
		m[binary.BigEndian.Uint64(k[11:])] = outState{pid, state}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var cur *broker.StoredSession // the session of the previous queue record
	var curCid uint64
	var in interner
	err = l.scan(tagQueue, func(k, v []byte) error {
		if len(k) != 18 {
			return fmt.Errorf("%w: malformed key", ErrCorrupt)
		}
		cid, seq := binary.BigEndian.Uint64(k[2:10]), binary.BigEndian.Uint64(k[10:])
		if cur == nil || cid != curCid {
			cur, curCid = byCid[cid], cid
		}
		if cur == nil {
			return nil
		}
		d, err := decodeDelivery(v, seq, &in)
		if err != nil {
			return err
		}
		if o, ok := out[cid][seq]; ok {
			d.PacketID, d.State = o.pid, o.state
		}
		cur.Queue = append(cur.Queue, d)
		return nil
	})
	if err != nil {
		return nil, err
	}

	err = l.scan(tagRetained, func(k, v []byte) error {
		m, err := decodeRetained(v)
		if err != nil {
			return err
		}
		if m.Topic != string(k[2:]) {
			return fmt.Errorf("%w: message topic %q differs from its key", ErrCorrupt, m.Topic)
		}
		st.Retained = append(st.Retained, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// scan calls fn for every record with tag, in key order. A record error
// fails the scan with the key named, or with SkipCorrupt is logged and
// counted.
func (l *loader) scan(tag byte, fn func(k, v []byte) error) error {
	lo, hi := tagRange(tag)
	it, err := l.snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("diskstore: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		l.n++
		if l.n&4095 == 0 {
			if err := l.ctx.Err(); err != nil {
				_ = it.Close() // the context error is the one to report
				return err
			}
		}
		v, err := it.ValueAndErr()
		if err == nil {
			err = fn(it.Key(), v)
		}
		if err == nil {
			continue
		}
		err = keyError(it.Key(), err)
		if !l.s.opts.SkipCorrupt {
			_ = it.Close() // the record error is the one to report
			return err
		}
		l.corrupt++
		l.s.log.Warn("diskstore: skipping corrupt record", "err", err)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("diskstore: scan %c: %w", tag, err)
	}
	return nil
}
