package broker

import (
	"strings"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// Client ids are a namespace per tenant (DESIGN.md section 3): the broker
// keys a session, its online connection, its delayed will, its expiry and
// its takeover damping by SessionKey(tenant, client id), so that two
// tenants may each have a "meter-001" and nothing one does reaches the
// other's session. Share groups are scoped the same way (groupKey).
//
// The key is the bare client id when the tenant is empty (no
// authentication, or an authenticator without tenants), else tenant,
// U+0000, client id. It is unambiguous because neither part can hold a
// NUL: the decoder refuses one in a client id [MQTT-1.5.4-2], and
// finishConnect refuses an identity whose tenant holds one.

// tenantSep separates the tenant from the name in a session or share
// group key.
const tenantSep = "\x00"

// SessionKey returns the key of client id clientID's session in tenant:
// what Session.ID, Message.Origin and the store's StoredSession.ClientID
// and Op.ClientID hold. It is clientID itself when tenant is empty.
func SessionKey(tenant, clientID string) string {
	if tenant == "" {
		return clientID
	}
	return tenant + tenantSep + clientID
}

// SplitSessionKey returns the tenant and client id of a session key
// (SessionKey). A key without a separator, such as a record written
// before tenants were keyed, is the client id in tenant "".
func SplitSessionKey(key string) (tenant, clientID string) {
	if t, id, ok := strings.Cut(key, tenantSep); ok {
		return t, id
	}
	return "", key
}

// groupKey returns the identity of share group group among the sessions of
// s's tenant: groups of the same name in two tenants are two groups
// (DESIGN.md section 3). "" stays "" (no group). It is the
// subKey.group of the trie and the Delivery.Share of what came through it.
func groupKey(s *session.Session, group string) string {
	if group == "" {
		return ""
	}
	tenant, _ := SplitSessionKey(s.ID)
	return SessionKey(tenant, group)
}

// subKeyOf returns the trie key and inner filter of s's subscription to
// filter (a validated filter, $share/group/ prefix included or not).
func subKeyOf(s *session.Session, filter string) (subKey, string) {
	group, inner := splitShared(filter)
	return subKey{s: s, group: groupKey(s, group)}, inner
}
