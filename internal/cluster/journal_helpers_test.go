package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/store/memstore"
)

// journalCluster starts three nodes (replicas 3), waits for their
// assets, creates the message log stream if nobody did, and gives each
// node a Journal over a memstore.
func journalCluster(t *testing.T) ([]member, []*Journal) {
	t.Helper()
	ms := startAll(t, configs(t, 3, 3))
	waitReady(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ms[0].js.Stream(ctx, logStream); err != nil { // the nodes made it
		t.Fatal(err)
	}
	js := make([]*Journal, len(ms))
	for i, m := range ms {
		js[i] = m.Journal(memstore.New())
		j := js[i]
		t.Cleanup(func() { j.Close() })
	}
	return ms, js
}

// claim claims key on m.
func claim(t *testing.T, m member, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Claim(ctx, key); err != nil {
		t.Fatalf("%s claims %q: %v", m.cfg.Node, key, err)
	}
}

// logPublish stores msg in the message log as the log writer does and
// returns its sequence.
func logPublish(t *testing.T, m member, msg *session.Message) uint64 {
	t.Helper()
	subj, err := TopicSubject(msg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	return logPublishRaw(t, m, logRoot+"."+subj, appendEnvelope(nil, msg, m.cfg.Node, m.incarnation, time.Now()))
}

func logPublishRaw(t *testing.T, m member, subject string, body []byte) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ack, err := m.js.Publish(ctx, subject, body)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// commit commits ops durably on j.
func commit(t *testing.T, j *Journal, ops ...broker.Op) {
	t.Helper()
	if err := j.Commit(&broker.Batch{Ops: ops}, true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// adopted is one session as LoadSession reported it.
type adopted struct {
	found bool
	s     *broker.StoredSession
}

// sessionOrder is a Restorer that collects one session and checks
// Store.Load's order.
type sessionOrder struct {
	key string
	s   *broker.StoredSession
}

func (o *sessionOrder) RestoreSession(s *broker.StoredSession) error {
	if o.s != nil || s.ClientID != o.key {
		return fmt.Errorf("session %q reported (want %q once)", s.ClientID, o.key)
	}
	cp := *s
	o.s = &cp
	return nil
}

func (o *sessionOrder) check(id string) error {
	if o.s == nil || id != o.key {
		return fmt.Errorf("record of %q before its session", id)
	}
	return nil
}

func (o *sessionOrder) RestoreSubscription(id string, sub *broker.StoredSubscription) error {
	if err := o.check(id); err != nil {
		return err
	}
	if len(o.s.Queue) > 0 || len(o.s.InboundQoS2) > 0 {
		return errors.New("subscription after a delivery or inbound id")
	}
	o.s.Subscriptions = append(o.s.Subscriptions, *sub)
	return nil
}

func (o *sessionOrder) RestoreDelivery(id string, d *broker.StoredDelivery) error {
	if err := o.check(id); err != nil {
		return err
	}
	if n := len(o.s.Queue); n > 0 && o.s.Queue[n-1].Seq >= d.Seq || len(o.s.InboundQoS2) > 0 {
		return fmt.Errorf("delivery %d out of order", d.Seq)
	}
	o.s.Queue = append(o.s.Queue, *d)
	return nil
}

func (o *sessionOrder) RestoreInbound(id string, pid uint16, write uint64) error {
	if err := o.check(id); err != nil {
		return err
	}
	if n := len(o.s.InboundQoS2); n > 0 && o.s.InboundQoS2[n-1] >= pid {
		return fmt.Errorf("inbound %d out of order", pid)
	}
	o.s.InboundQoS2 = append(o.s.InboundQoS2, pid)
	if write != 0 {
		if o.s.InboundWrites == nil {
			o.s.InboundWrites = make(map[uint16]uint64)
		}
		o.s.InboundWrites[pid] = write
	}
	return nil
}

func (o *sessionOrder) RestoreRetained(*broker.StoredMessage) error {
	return errors.New("retained message from LoadSession")
}

// load adopts key through j.
func load(t *testing.T, j *Journal, key string) adopted {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := &sessionOrder{key: key}
	found, err := j.LoadSession(ctx, key, o)
	if err != nil {
		t.Fatalf("LoadSession(%q): %v", key, err)
	}
	if found != (o.s != nil) {
		t.Fatalf("LoadSession(%q) found %v, reported a session: %v", key, found, o.s != nil)
	}
	return adopted{found, o.s}
}

// same fails t unless got equals want (as JSON, times in UTC).
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) != string(w) {
		t.Fatalf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

// subjectMsgs returns how many messages subject holds in the sessions
// stream.
func subjectMsgs(t *testing.T, m member, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := m.js.Stream(ctx, sessionsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// compactionsDone waits until no session of j is being compacted. A
// load by another node that did not claim the session races with the
// purge that follows a snapshot (the fold may find the older records
// purged and the snapshot past its end); an adoption claims first, and
// the claim's Forget stops the old owner's compactions.
func compactionsDone(t *testing.T, j *Journal) {
	t.Helper()
	mqtttest.Eventually(t, 30*time.Second, func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		for _, sh := range j.mu.shadows {
			if sh.compacting {
				return false
			}
		}
		return true
	}, "the journal's compactions finished")
}
