package auth

import "github.com/petrel-mqtt/petrel/broker"

// rolesNow returns the roles an identity authenticated earlier holds under
// engine e, and false when e no longer knows it as that identity. An
// identity from the users file, a certificate user or anonymous access is
// looked up again, so that a reload that narrows a user's roles, moves it
// to another tenant or removes it applies to its live connections and
// offline sessions (Broker.Reauthorize), not only to its next CONNECT
// (DESIGN.md section 3: what is delivered is allowed for the identity that
// receives it under the policy in force). A token carries its own roles
// (none once JWT authentication is off); an identity made by another
// authenticator keeps the roles it came with.
func (e *engine) rolesNow(id *broker.Identity) ([]string, bool) {
	switch id.Attrs[AttrMethod] {
	case "password", "scram":
		u, ok := e.users[id.Username]
		if !ok || e.userTenant(u) != id.Tenant {
			return nil, false
		}
		return u.Roles, true
	case "certificate":
		if !e.cfg.Certificate.Enabled {
			return nil, false
		}
		if cu, ok := e.certUsers[id.Username]; ok {
			t := cu.Tenant
			if t == "" {
				t = e.cfg.DefaultTenant
			}
			return cu.Roles, t == id.Tenant
		}
		u, ok := e.users[id.Username]
		if !ok || u.Password != "" || u.SCRAM != "" || e.userTenant(u) != id.Tenant {
			return nil, false
		}
		return u.Roles, true
	case "anonymous":
		a := e.cfg.Anonymous
		return a.Roles, a.Enabled && a.Tenant == id.Tenant
	case "jwt":
		// A token carries its roles, as long as tokens are accepted at
		// all: with JWT authentication turned off, none is known.
		return id.Roles, e.jwt != nil
	}
	return id.Roles, true
}

// userTenant is u's tenant, the default tenant when the entry names none.
func (e *engine) userTenant(u *User) string {
	if u.Tenant == "" {
		return e.cfg.DefaultTenant
	}
	return u.Tenant
}
