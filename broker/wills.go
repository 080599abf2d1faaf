package broker

import (
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// Wills in a cluster (WillKeeper): a connection with a will has the
// cluster keep a copy while its will may still be due from this node;
// when the node dies, another node publishes it (SendOrphanWill), unless
// the client reconnected elsewhere first (the fabric decides). The copy is
// dropped once this node has decided the will: sent, discarded by a normal
// DISCONNECT, cancelled by a resume, or the session moved to another node.

// keepWill records c's will with the cluster after its CONNECT succeeded,
// or drops an earlier connection's (a resume here cancelled its delayed
// will).
func (b *Broker) keepWill(c *conn) {
	if b.wk == nil {
		return
	}
	if c.will != nil {
		b.wk.KeepWill(c.key, sessionRecord(c, time.Time{}, true))
		return
	}
	b.wk.DropWill(c.key)
}

// dropWill tells the cluster that this node decided key's will.
func (b *Broker) dropWill(key string) {
	if b.wk != nil {
		b.wk.DropWill(key)
	}
}

// storedWill turns the will of a record into the message to publish and
// its delay, counted from ended.
func storedWill(ss *StoredSession, ended time.Time) (*session.Message, time.Duration) {
	sw := ss.Will
	w := &packet.Will{Topic: sw.Topic, Payload: sw.Payload, QoS: sw.QoS, Retain: sw.Retain}
	if sw.Properties != nil {
		w.Properties = *sw.Properties
	}
	if ss.Version == packet.V5 && ss.WillDelay > 0 {
		w.Properties.WillDelayInterval = ss.WillDelay
		w.Properties.Set(packet.PropWillDelayInterval)
	}
	msg, delay := willMessage(w, ss.Version, ss.ClientID, ended)
	if ss.Version == packet.V5 && ss.ExpiryInterval != NoExpiry {
		delay = min(delay, time.Duration(ss.ExpiryInterval)*time.Second) // [MQTT-3.1.3-9]
	}
	return msg, delay
}

// SendOrphanWill implements OrphanWillHost: the will of a connection whose
// node died is published here, authorized again for its holder, after its
// 5.0 Will Delay Interval counted from now (the connection's end is not
// known more precisely); a delayed one is cancelled if the client resumes
// its session on this node first [MQTT-3.1.3-9].
func (b *Broker) SendOrphanWill(rec *StoredSession) {
	if rec == nil || rec.Will == nil {
		return
	}
	msg, delay := storedWill(rec, b.opts().Now())
	holder := restoredHolder(rec.Holder, rec.ClientID)
	tenant, client := SplitSessionKey(rec.ClientID)
	b.log.Info("publishing the will of a client whose node died", "tenant", tenant, "client", client,
		"topic", msg.Topic, "delay", delay)
	if delay > 0 {
		b.scheduleWill(rec.ClientID, msg, holder, delay, nil)
		return
	}
	b.sendWill(msg, holder)
}
