package admin

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/packet"
)

// access is what an endpoint asks of its caller.
type access int

const (
	open          access = iota // anyone (health probes)
	read                        // a viewer or an admin; tenant-scoped principals see their tenant
	write                       // an admin; tenant-scoped admins act on their tenant
	operatorRead                // a viewer or admin of the operator tenant (broker-wide figures)
	operatorWrite               // an admin of the operator tenant (reload)
)

// principal is who a request is: an authenticated identity, or the
// loopback administrator when no credentials are needed.
type principal struct {
	// id is the identity the Authenticator returned; nil for the
	// loopback administrator.
	id    *broker.Identity
	admin bool // PETREL_ADMIN (else PETREL_VIEWER)
	// scoped: the principal's tenant is not the operator tenant, so it
	// sees and acts on its own tenant only.
	scoped bool
	tenant string
}

// name is how logs name the principal.
func (p *principal) name() string {
	if p.id == nil {
		return "loopback"
	}
	if p.id.Username != "" {
		return p.id.Username
	}
	return "token:" + p.id.Tenant
}

// authCheckTimeout bounds one credential check.
const authCheckTimeout = 5 * time.Second

// adminClientID is the client id credentials are checked with: an
// Authenticator may substitute it into role filters ({clientId}), and it
// is one safe topic level.
const adminClientID = "petrel-admin"

// handle registers h for pattern behind the authentication and the
// access check acc.
func (s *Server) handle(pattern string, acc access, h func(http.ResponseWriter, *http.Request, *principal)) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if acc == open {
			h(w, r, nil)
			return
		}
		p, status, msg := s.authenticate(r)
		if p == nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="petrel", charset="UTF-8"`)
				w.Header().Add("WWW-Authenticate", `Bearer realm="petrel"`)
			}
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			writeError(w, status, msg)
			return
		}
		if (acc == write || acc == operatorWrite) && !p.admin {
			writeError(w, http.StatusForbidden, "this needs the "+api.RoleAdmin+" role")
			return
		}
		if (acc == operatorRead || acc == operatorWrite) && p.scoped {
			writeError(w, http.StatusForbidden, "broker-wide; not for a tenant's principal")
			return
		}
		if acc == write || acc == operatorWrite {
			s.log.Info("admin request", "principal", p.name(), "tenant", p.tenant, "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr)
		}
		h(w, r, p)
	})
}

// authenticate finds the request's principal, or the status and message
// of the refusal: 401 without valid credentials, 403 without an admin
// role, 503 while too many credential checks run.
func (s *Server) authenticate(r *http.Request) (*principal, int, string) {
	user, pass, hasCreds, malformed := credentials(r)
	if malformed {
		return nil, http.StatusUnauthorized, "malformed Authorization header"
	}
	loopback := isLoopback(r.RemoteAddr)
	if !hasCreds {
		if loopback && (s.o.Authenticator == nil || s.o.OpenOnLoopback) {
			return &principal{admin: true}, 0, ""
		}
		return nil, http.StatusUnauthorized, "authentication required"
	}
	if s.o.Authenticator == nil {
		if loopback { // nothing to check credentials against: loopback is open
			return &principal{admin: true}, 0, ""
		}
		return nil, http.StatusUnauthorized, "authentication is not configured; only loopback clients are served"
	}
	select {
	case s.authSlots <- struct{}{}:
	default:
		return nil, http.StatusServiceUnavailable, "too many credential checks in progress"
	}
	ctx, cancel := context.WithTimeout(r.Context(), authCheckTimeout)
	ci := &broker.ConnectInfo{ClientID: adminClientID, Username: user, HasUser: user != "", Password: []byte(pass),
		HasPass: true, Version: packet.V5, RemoteAddr: remoteAddr(r.RemoteAddr), Listener: "admin"}
	id, err := s.o.Authenticator.Authenticate(ctx, ci)
	cancel()
	<-s.authSlots
	if err != nil || id == nil {
		s.log.Info("admin request refused", "username", user, "remote", r.RemoteAddr, "path", r.URL.Path, "reason", err)
		return nil, http.StatusUnauthorized, "bad credentials"
	}
	p := &principal{id: id, tenant: id.Tenant, scoped: id.Tenant != s.o.OperatorTenant}
	switch {
	case slices.Contains(id.Roles, api.RoleAdmin):
		p.admin = true
	case slices.Contains(id.Roles, api.RoleViewer):
	default:
		return nil, http.StatusForbidden, "this needs the " + api.RoleViewer + " or " + api.RoleAdmin + " role"
	}
	return p, 0, ""
}

// credentials reads HTTP basic credentials, or a Bearer token as the
// password with no username (as a JWT is given in a CONNECT).
func credentials(r *http.Request) (user, pass string, ok, malformed bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", false, false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Basic"):
		u, p, ok := r.BasicAuth()
		if !ok {
			return "", "", false, true
		}
		if u == "" && p == "" {
			return "", "", false, false
		}
		return u, p, true, false
	case strings.EqualFold(scheme, "Bearer"):
		tok := strings.TrimSpace(rest)
		if tok == "" {
			return "", "", false, true
		}
		return "", tok, true, false
	}
	return "", "", false, true
}

// isLoopback reports whether a request's remote address is a loopback
// address.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func remoteAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

// tenantOf returns the tenant a request names (the tenant parameter) and
// whether it names one; a scoped principal gets its own tenant when it
// names none, and a refusal when it names another.
func (p *principal) tenantOf(r *http.Request) (tenant string, named bool, ok bool) {
	q := r.URL.Query()
	tenant, named = q.Get("tenant"), q.Has("tenant")
	if !p.scoped {
		return tenant, named, true
	}
	if named && tenant != p.tenant {
		return "", false, false
	}
	return p.tenant, true, true
}

// allowsTopic reports whether p may see or act on a retained topic or
// filter: a scoped principal's are those under its tenant's first level
// (the {tenantId}/... convention of the roles).
func (p *principal) allowsTopic(name string) bool {
	if !p.scoped {
		return true
	}
	first, _, _ := strings.Cut(name, "/")
	return first == p.tenant
}
