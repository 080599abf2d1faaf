package broker

import (
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// AuditCredentialsRevoked is the audit event (AuditKey) of a connection
// closed because a policy reload no longer accepts its credentials.
const AuditCredentialsRevoked = "credentials.revoked"

// revokeCredentials closes every connection whose credentials checker no
// longer accepts (a user removed or moved to another tenant, a password
// changed, a token whose signing key was removed): 5.0 clients that got
// their CONNACK are sent DISCONNECT 0x87 (not authorized)
// [MQTT-3.14.2-1], 3.x clients are closed. The will is not published:
// the identity that set it is no longer accepted. Each is logged at WARN
// and counted (Stats.CredentialRevocations; disconnects by reason
// "credentials_revoked"). No broker lock is held while checker runs.
func (b *Broker) revokeCredentials(checker CredentialChecker) int {
	type held struct {
		c *conn
		s *session.Session
	}
	b.mu.Lock()
	all := make([]held, 0, len(b.mu.clients))
	for key, c := range b.mu.clients {
		if s := b.mu.sessions[key]; s != nil {
			all = append(all, held{c, s})
		}
	}
	b.mu.Unlock()
	n := 0
	for _, h := range all {
		// Only a connection past its CONNECT (c.mu.sess is set after
		// hold): the session's holder is then its identity, or the one a
		// re-authentication gave it. One still in its CONNECT is skipped:
		// it authenticated a moment ago, under the old configuration or
		// the new one (a window of one CONNECT; its next
		// re-authentication or the next reload decides it).
		h.c.mu.Lock()
		mine := h.c.mu.sess == h.s
		h.c.mu.Unlock()
		if !mine {
			continue
		}
		h.s.Guard.Lock()
		id, _ := h.s.Guard.Owner.(*Identity)
		h.s.Guard.Unlock()
		if id == nil || checker.CredentialsValid(id) {
			continue
		}
		c := h.c
		b.log.Warn("credentials no longer accepted; disconnecting", AuditKey, AuditCredentialsRevoked,
			"tenant", id.Tenant, "client", c.clientID, "principal", id.Principal, "method", id.Method,
			"remote", c.remoteString(), "cause", causeReload)
		c.closeWith(packet.NotAuthorized, reasonRevoked)
		n++
	}
	b.stats.credentialRevocations.Add(uint64(n))
	return n
}
