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

// loader reads one snapshot of the store into a Restorer.
type loader struct {
	s       *Store
	snap    *pebble.Snapshot
	ctx     context.Context
	r       broker.Restorer
	stop    error // the Restorer's error: it ends Load, SkipCorrupt or not
	corrupt int
	n       int // records read, for the context check

	ids map[uint64]string              // cid -> ClientID of the sessions reported
	out map[uint64]map[uint64]outState // cid -> seq -> outbound inflight state
	sub broker.StoredSubscription      // the record handed to r (r keeps only what it points to)
	del broker.StoredDelivery          // as sub
}

// Load implements broker.Store, from one snapshot: sessions by ClientID,
// then subscriptions, inbound ids, queues (by session, Seq ascending) and
// retained messages by topic. It holds no more than the cid of each
// session and the outbound inflight states (bounded by the sessions'
// inflight windows): every other record goes to r as it is decoded. A
// corrupt record fails Load with an error naming its key, unless
// Options.SkipCorrupt; records of a session whose own record was skipped
// are skipped with it.
//
// Load works on a store unavailable since Open (a full disk: its engine
// is open read-only); after the engine failed while running, it fails
// until the store has recovered.
func (s *Store) Load(ctx context.Context, r broker.Restorer) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.eng.RLock()
	defer s.eng.RUnlock()
	if s.eng.db == nil {
		if s.eng.noDB {
			return nil // nothing stored yet
		}
		return fmt.Errorf("diskstore: load: no engine open: %w", s.Err())
	}
	snap := s.eng.db.NewSnapshot()
	defer snap.Close() //nolint:errcheck // a snapshot's Close only releases it
	l := &loader{s: s, snap: snap, ctx: ctx, r: r,
		ids: make(map[uint64]string), out: make(map[uint64]map[uint64]outState)}
	if err := l.load(); err != nil {
		return err
	}
	s.corrupt = l.corrupt
	return nil
}

// restored records the Restorer's error, which stops the scan.
func (l *loader) restored(err error) error {
	if err != nil {
		l.stop = err
	}
	return err
}

func (l *loader) load() error {
	err := l.scan(tagSession, func(k, v []byte) error {
		cid, sess, err := decodeSession(v)
		if err != nil {
			return err
		}
		sess.ClientID = string(k[2:])
		l.ids[cid] = sess.ClientID
		return l.restored(l.r.RestoreSession(sess))
	})
	if err != nil {
		return err
	}

	err = l.scan(tagSub, func(k, v []byte) error {
		if len(k) < 10 {
			return fmt.Errorf("%w: short key", ErrCorrupt)
		}
		id, ok := l.ids[binary.BigEndian.Uint64(k[2:10])]
		if !ok {
			return nil // left by a skipped session record
		}
		sub, err := decodeSub(v, string(k[10:]))
		if err != nil {
			return err
		}
		l.sub = sub
		return l.restored(l.r.RestoreSubscription(id, &l.sub))
	})
	if err != nil {
		return err
	}

	err = l.scan(tagInflight, func(k, v []byte) error {
		if len(k) < 11 || (k[10] == inflightOut && len(k) != 19) || (k[10] == inflightIn && len(k) != 13) || k[10] > inflightIn {
			return fmt.Errorf("%w: malformed key", ErrCorrupt)
		}
		cid := binary.BigEndian.Uint64(k[2:10])
		id, ok := l.ids[cid]
		if !ok {
			return nil
		}
		if k[10] == inflightIn {
			if err := decodeEmpty(v); err != nil {
				return err
			}
			return l.restored(l.r.RestoreInbound(id, binary.BigEndian.Uint16(k[11:]), 0))
		}
		pid, state, err := decodeInflight(v)
		if err != nil {
			return err
		}
		m := l.out[cid]
		if m == nil {
			m = make(map[uint64]outState)
			l.out[cid] = m
		}
		m[binary.BigEndian.Uint64(k[11:])] = outState{pid, state}
		return nil
	})
	if err != nil {
		return err
	}

	var in interner
	var (
		cur    bool // curCid is the session of the previous queue record
		curCid uint64
		curID  string
		curOK  bool
	)
	err = l.scan(tagQueue, func(k, v []byte) error {
		if len(k) != 18 {
			return fmt.Errorf("%w: malformed key", ErrCorrupt)
		}
		cid, seq := binary.BigEndian.Uint64(k[2:10]), binary.BigEndian.Uint64(k[10:])
		if !cur || cid != curCid {
			cur, curCid = true, cid
			curID, curOK = l.ids[cid]
		}
		id, ok := curID, curOK
		if !ok {
			return nil
		}
		d, err := decodeDelivery(v, seq, &in)
		if err != nil {
			return err
		}
		if o, ok := l.out[cid][seq]; ok {
			d.PacketID, d.State = o.pid, o.state
		}
		l.del = d
		return l.restored(l.r.RestoreDelivery(id, &l.del))
	})
	if err != nil {
		return err
	}

	return l.scan(tagRetained, func(k, v []byte) error {
		m, err := decodeRetained(v)
		if err != nil {
			return err
		}
		if m.Topic != string(k[2:]) {
			return fmt.Errorf("%w: message topic %q differs from its key", ErrCorrupt, m.Topic)
		}
		return l.restored(l.r.RestoreRetained(m))
	})
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
		if l.stop != nil {
			_ = it.Close() // the Restorer's error is the one to report
			return l.stop
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
