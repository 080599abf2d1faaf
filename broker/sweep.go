package broker

import (
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// sweep removes, every Options.SweepInterval until Shutdown, what expired
// while nobody looked: 5.0 messages queued for offline sessions past their
// expiry, and retained messages past theirs, from memory and from the
// store. (Expired sessions go by their own timers; a message is also
// dropped when it comes up for sending.)
func (b *Broker) sweep() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts().SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			b.sweepOnce()
		}
	}
}

// startSweepLocked starts the sweeper once, with the first Serve. The
// caller holds b.mu and has seen no shutdown, so the sweeper is counted
// in b.wg before Shutdown (which sets shutdown under b.mu) waits on it.
func (b *Broker) startSweepLocked() {
	if !b.mu.sweeping {
		b.mu.sweeping = true
		b.wg.Add(1)
		go b.sweep()
	}
}

func (b *Broker) sweepOnce() {
	now := b.opts().Now()
	b.mu.Lock()
	offline := make([]*session.Session, 0, len(b.mu.sessions)-len(b.mu.clients))
	for id, s := range b.mu.sessions {
		if b.mu.clients[id] == nil {
			offline = append(offline, s)
		}
	}
	b.mu.Unlock()
	var batch Batch
	expired := 0
	for _, s := range offline {
		n, seqs := s.DropExpired(now)
		expired += n
		for _, seq := range seqs {
			batch.Add(Op{Kind: OpDequeue, ClientID: s.ID, Seq: seq})
		}
	}
	var topics []string
	b.retained.Range(func(topic string, m *session.Message) bool {
		if m.Expired(now) {
			topics = append(topics, topic)
		}
		return true
	})
	for _, topic := range topics {
		b.retained.Delete(topic)
		batch.Add(Op{Kind: OpDeleteRetained, Topic: topic})
	}
	if batch.Len() > 0 {
		// A failed write is logged and counted by commit; the next sweep
		// or the next restart removes them again.
		_ = b.commit(&batch, false)
	}
	if expired+len(topics) > 0 {
		b.log.Debug("expired messages removed", "queued", expired, "retained", len(topics))
	}
}
