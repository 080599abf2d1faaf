package auth

import "github.com/petrel-mqtt/petrel/broker"

// CredentialsValid reports whether the credentials id authenticated with
// are still accepted under the running configuration
// (broker.CredentialChecker; the broker closes the connections refused
// after a reload):
//   - the identity is still known as itself (rolesNow): a users-file or
//     certificate user removed or moved to another tenant, or anonymous
//     access turned off, is refused;
//   - a password user's entry has the same password hash, a SCRAM user's
//     the same SCRAM credentials: a changed password (a stolen one being
//     replaced) stops working on live connections too. Re-hashing the same
//     password also changes the entry, and closes them;
//   - a token still verifies under the keys in force (its signature,
//     algorithm and kid; its claims were checked at CONNECT): a key
//     removed or rotated out closes the connections of the tokens it
//     signed, and tokens that still verify keep their roles.
//
// An identity without a live connection state (a copy) is judged by
// rolesNow alone.
func (s *Service) CredentialsValid(id *broker.Identity) bool {
	e := s.cur.Load()
	if _, ok := e.rolesNow(id); !ok {
		return false
	}
	cred, live := s.cache.credential(id)
	if !live {
		return true
	}
	switch id.Attrs[AttrMethod] {
	case "password":
		u := e.users[id.Username]
		return u != nil && u.Password == cred
	case "scram":
		u := e.users[id.Username]
		return u != nil && u.SCRAM == cred
	case "jwt":
		return e.jwt != nil && e.jwt.verifySignature(cred) == nil
	}
	return true
}
