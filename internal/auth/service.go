// Package auth is Petrel's security model (DESIGN.md section 4): an
// authentication chain (JWT in the CONNECT password, the users file,
// client certificates, anonymous clients; SCRAM-SHA-256 for MQTT 5.0
// enhanced authentication) producing an identity of tenant and roles, and
// the role-based Authorizer that decides every publish and subscribe.
// Service implements broker.Authenticator, broker.EnhancedAuthenticator
// and broker.Authorizer.
package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/packet"
)

// DefaultTenant is the tenant of users-file and certificate clients that
// name none (the seeds' internal clients).
const DefaultTenant = "ssni"

// DefaultAnonymousTenant is the tenant of anonymous clients unless
// configured.
const DefaultAnonymousTenant = "anonymous"

// Config is the whole security configuration.
type Config struct {
	// DefaultTenant is the tenant of users and certificate identities
	// that name none; default DefaultTenant.
	DefaultTenant string
	// UsersFile is the YAML users file; "" for none.
	UsersFile string
	// Anonymous lets clients without username and password connect.
	Anonymous Anonymous
	// JWT configures tokens in the CONNECT password.
	JWT JWTConfig
	// Certificate configures identities from TLS client certificates.
	Certificate Certificate
	// Roles replace DefaultRoles when not nil.
	Roles []Role
	// Checks bound the password hash checks; read by New only (Reload
	// keeps the running Checker).
	Checks PasswordChecks
}

// Anonymous configures clients that send neither username nor password.
type Anonymous struct {
	Enabled bool
	Tenant  string // default DefaultAnonymousTenant
	Roles   []string
}

// Certificate configures the client-certificate authenticator. A client
// whose verified certificate names (CommonName or whole subject) an entry
// of Users, or a users-file entry without password, is that identity.
type Certificate struct {
	Enabled bool
	// Username: "cn" (default) or "subject", used when the listener does
	// not already name clients by certificate (cert_username).
	Username string
	Users    []CertUser
}

// CertUser maps a certificate name to a tenant and roles.
type CertUser struct {
	Name   string
	Tenant string // default Config.DefaultTenant
	Roles  []string
}

// engine is one loaded configuration: immutable, replaced whole by Reload.
type engine struct {
	cfg       Config
	users     map[string]*User
	roles     map[string]Role
	jwt       *verifier
	certUsers map[string]CertUser
	fake      []byte // salt secret for SCRAM of unknown users
	// dummy is the hash an unknown user's password is checked against,
	// of the cost of the users file's hashes; "" when no user has a
	// password (then there is no name to hide).
	dummy string
}

func build(c Config, now func() time.Time) (*engine, error) {
	if c.DefaultTenant == "" {
		c.DefaultTenant = DefaultTenant
	}
	if c.Anonymous.Tenant == "" {
		c.Anonymous.Tenant = DefaultAnonymousTenant
	}
	if c.Certificate.Username == "" {
		c.Certificate.Username = "cn"
	}
	if c.Roles == nil {
		c.Roles = DefaultRoles()
	}
	e := &engine{cfg: c, roles: map[string]Role{}, certUsers: map[string]CertUser{}, users: map[string]*User{}}
	var errs []error
	if !safeLevel(c.DefaultTenant) {
		errs = append(errs, fmt.Errorf("auth: default tenant %q must be one topic level without + # / or NUL", c.DefaultTenant))
	}
	if !safeLevel(c.Anonymous.Tenant) {
		errs = append(errs, fmt.Errorf("auth: anonymous tenant %q must be one topic level without + # / or NUL", c.Anonymous.Tenant))
	}
	for _, r := range c.Roles {
		if err := ValidateRole(r); err != nil {
			errs = append(errs, err)
		}
		if _, dup := e.roles[r.Name]; dup {
			errs = append(errs, fmt.Errorf("auth: role %s defined twice", r.Name))
		}
		e.roles[r.Name] = r
	}
	if c.UsersFile != "" {
		u, err := LoadUsers(c.UsersFile)
		if err != nil {
			errs = append(errs, err)
		}
		e.users = u
	}
	if c.JWT.Enabled() {
		v, err := newVerifier(c.JWT, now)
		if err != nil {
			errs = append(errs, err)
		}
		e.jwt = v
	}
	for _, cu := range c.Certificate.Users {
		if cu.Name == "" {
			errs = append(errs, errors.New("auth: certificate user without a name"))
		}
		if cu.Tenant != "" && !safeLevel(cu.Tenant) {
			errs = append(errs, fmt.Errorf("auth: certificate user %s: tenant %q must be one topic level without + # / or NUL", cu.Name, cu.Tenant))
		}
		e.certUsers[cu.Name] = cu
	}
	switch c.Certificate.Username {
	case "cn", "subject":
	default:
		errs = append(errs, fmt.Errorf("auth: certificate username %q is not cn or subject", c.Certificate.Username))
	}
	errs = append(errs, e.unknownRoles()...)
	e.fake = make([]byte, 32)
	randRead(e.fake)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var hashes []string
	for _, u := range e.users {
		if u.Password != "" {
			hashes = append(hashes, u.Password)
		}
	}
	if len(hashes) > 0 {
		d, err := dummyHash(hashes)
		if err != nil {
			return nil, err
		}
		e.dummy = d
	}
	return e, nil
}

// unknownRoles names every role the users file, the certificate users and
// the anonymous clients are given that no role defines: a typo there
// would otherwise leave a client without its grants, noticed only by the
// warning at its CONNECT. Tokens' roles are checked at CONNECT (logged).
func (e *engine) unknownRoles() []error {
	var errs []error
	check := func(where string, roles []string) {
		for _, r := range roles {
			if _, ok := e.roles[r]; !ok && !isAdminRole(r) {
				errs = append(errs, fmt.Errorf("auth: %s: role %q is not defined (auth.roles, or the built-in roles without it)", where, r))
			}
		}
	}
	names := slices.Sorted(maps.Keys(e.users))
	for _, n := range names {
		check(fmt.Sprintf("users file %s: user %q", e.cfg.UsersFile, n), e.users[n].Roles)
	}
	for _, cu := range e.cfg.Certificate.Users {
		check(fmt.Sprintf("certificate user %q", cu.Name), cu.Roles)
	}
	check("anonymous", e.cfg.Anonymous.Roles)
	return errs
}

// Service is the authenticator and authorizer. Create it with New; it is
// safe for concurrent use, and Reload swaps its configuration atomically.
type Service struct {
	log    *slog.Logger
	events *ratelog.Limiter // client-caused lines, per remote address
	now    func() time.Time
	cur    atomicEngine
	cache  stateCache
	checks *Checker
}

// Options are Service's collaborators.
type Options struct {
	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
	// Checker runs a TokenHandler's secret checks; nil: its own with the
	// default PasswordChecks. Pass Service.Checker to share the bounds.
	Checker *Checker
}

// New loads c (users file, keys) and returns the Service.
func New(c Config, o Options) (*Service, error) {
	s := &Service{log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	e, err := build(c, s.now)
	if err != nil {
		return nil, err
	}
	s.events = ratelog.New(s.log, ratelog.Options{})
	var p [6]byte
	randRead(p[:])
	s.cache.prefix = hex.EncodeToString(p[:]) + "."
	s.cur.Store(e)
	s.checks = NewChecker(c.Checks, s.now)
	return s, nil
}

// Close reports the log lines held back by the rate limit (ratelog) and
// stops its reports; the Service keeps working.
func (s *Service) Close() { s.events.Close() }

// Checker returns the Service's password checker, for a TokenHandler to
// share (Options.Checker).
func (s *Service) Checker() *Checker { return s.checks }

// Stats returns the password check counters.
func (s *Service) Stats() CheckStats { return s.checks.Stats() }

// Reload re-reads the users file and key files and applies c: new
// CONNECTs use it at once, and connected clients' next decisions use the
// new role definitions (their role names stay those given at CONNECT).
// Subscriptions already granted are decided again only when the broker
// is told: call broker.Broker.Reauthorize after Reload. On error the
// running configuration is kept.
func (s *Service) Reload(c Config) error {
	e, err := build(c, s.now)
	if err != nil {
		return err
	}
	s.cur.Store(e)
	return nil
}

// Verify checks that the Service accepts tokens signed by sig (used to
// validate a token endpoint's key against the JWT settings at start).
func (s *Service) Verify(token string) error {
	e := s.cur.Load()
	if e.jwt == nil {
		return errors.New("auth: jwt authentication is not configured")
	}
	_, err := e.jwt.verify(token)
	return err
}

// Compile-time checks that Service is what the broker needs.
var (
	_ broker.Authenticator         = (*Service)(nil)
	_ broker.EnhancedAuthenticator = (*Service)(nil)
	_ broker.Authorizer            = (*Service)(nil)
	_ broker.CredentialChecker     = (*Service)(nil)
)

// decision is an authenticator's answer in the chain.
type decision int

const (
	next  decision = iota // not mine: ask the next authenticator
	allow                 // authenticated
	deny                  // refused, with a reason code
)

// authnResult is what one authenticator of the chain returns.
type authnResult struct {
	d      decision
	method string
	id     *broker.Identity
	code   packet.ReasonCode // for deny
	err    error             // why, for the log; never holds a secret
	// cred is what CredentialsValid compares after a reload: the
	// password hash of the users-file entry, the token itself.
	cred string
}

// Authenticate runs the chain: JWT, users file, client certificate,
// anonymous. The first authenticator that allows or denies decides; when
// none does the client is refused (bad user name or password when it sent
// credentials, not authorized otherwise). Password checks run within the
// Checker's bounds: past them the client is refused with server busy
// (0x89; 3.x: 3) or, for a name or address with too many recent
// failures, connection rate exceeded (0x9F; 3.x: 3).
func (s *Service) Authenticate(ctx context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	e := s.cur.Load()
	password := func(ci *broker.ConnectInfo) authnResult { return s.passwordAuth(ctx, e, ci) }
	for _, step := range []func(*broker.ConnectInfo) authnResult{e.jwtAuth, password, e.certAuth, e.anonymousAuth} {
		r := step(ci)
		switch r.d {
		case next:
			continue
		case deny:
			s.refused(ci, r.method, r.code, r.err)
			return nil, s.checks.refusal(r.code, r.err)
		}
		return s.finish(e, ci, r.method, r.id, r.cred)
	}
	code := packet.NotAuthorized
	if ci.HasPass || (ci.HasUser && !ci.CertUsername) {
		code = packet.BadUsernameOrPassword
	}
	if e.dummy != "" && ci.HasPass && ci.Username != "" {
		// A name without a password hash costs what a wrong password
		// does, within the same bounds, so neither the time nor the code
		// of the refusal tells which usernames exist.
		err := s.checks.checkDummy(ctx, e.dummy, ci.Password, attemptOf(ci))
		if c := checkRefusal(err); c != 0 {
			s.refused(ci, "password", c, err)
			return nil, s.checks.refusal(c, err)
		}
	}
	s.refused(ci, "none", code, errors.New("no authenticator accepted the client"))
	return nil, code
}

// attemptOf names a CONNECT's password check for the failure limits.
func attemptOf(ci *broker.ConnectInfo) Attempt {
	return Attempt{Name: ci.Username, Addr: AddrOf(ci.RemoteAddr)}
}

// checkRefusal maps the Checker's refusals to CONNACK codes: server busy
// for ErrBusy, connection rate exceeded for ErrThrottled (both 3, server
// unavailable, for 3.x, packet.ConnackReturnCode); 0 for anything else.
func checkRefusal(err error) packet.ReasonCode {
	switch {
	case errors.Is(err, ErrBusy):
		return packet.ServerBusy
	case errors.Is(err, ErrThrottled):
		return packet.ConnectionRateExceeded
	}
	return 0
}

// finish checks that the identity's values may be substituted into its
// roles' filters, compiles its grants and registers the connection's
// decision cache, with cred, what it authenticated with
// (CredentialsValid).
func (s *Service) finish(e *engine, ci *broker.ConnectInfo, method string, id *broker.Identity, cred string) (*broker.Identity, error) {
	id.ClientID = ci.ClientID
	if !safeLevel(id.Tenant) {
		s.refused(ci, method, packet.NotAuthorized, fmt.Errorf("%w: tenant %q", errUnsafeTenant, id.Tenant))
		return nil, packet.NotAuthorized
	}
	g, err := compile(e.roles, id.Roles, id.Tenant, id.ClientID, id.Username)
	if err != nil {
		code := packet.NotAuthorized
		if errors.Is(err, errUnsafeClientID) {
			code = packet.ClientIdentifierNotValid
		}
		s.refused(ci, method, code, err)
		return nil, code
	}
	for _, r := range id.Roles {
		if _, ok := e.roles[r]; !ok && !isAdminRole(r) {
			s.events.Log(slog.LevelWarn, ratelog.AddrKey(ci.RemoteAddr), "auth: unknown role ignored", "client", ci.ClientID,
				"username", ci.Username, "role", r, "method", method)
		}
	}
	if id.Attrs == nil {
		id.Attrs = map[string]string{}
	}
	id.Attrs[AttrMethod] = method
	id.Method = method
	if id.Principal == "" {
		id.Principal = id.Username
	}
	s.cache.register(id, e, g, cred)
	s.log.Debug("auth: authenticated", "client", ci.ClientID, "username", id.Username, "tenant", id.Tenant,
		"roles", id.Roles, "method", method, "remote", addrString(ci))
	return id, nil
}

// AttrMethod is the Identity.Attrs key naming the authenticator that
// accepted the client ("jwt", "password", "certificate", "anonymous",
// "scram").
const AttrMethod = "auth.method"

// Errors behind refusals (logged, and wrapped by compile).
var (
	errUnsafeTenant   = errors.New("auth: tenant is not a safe topic level")
	errUnsafeClientID = errors.New("auth: client id is not a safe topic level")
	errUnsafeUsername = errors.New("auth: username is not a safe topic level")
)

// refused logs an authentication failure with its method and reason
// (never the password or token), at most one line per remote address per
// interval (ratelog): a guessing flood costs the log two lines every 10 s.
func (s *Service) refused(ci *broker.ConnectInfo, method string, code packet.ReasonCode, err error) {
	s.events.Log(slog.LevelInfo, ratelog.AddrKey(ci.RemoteAddr), "authentication failed", ratelog.AuditKey, AuditAuthFailure,
		"client", ci.ClientID, "username", ci.Username, "remote", addrString(ci),
		"listener", ci.Listener, "method", method, "code", code.String(), "reason", err)
}

// AuditAuthFailure is the audit event (ratelog.AuditKey) of a refused
// authentication.
const AuditAuthFailure = "auth.failure"

func addrString(ci *broker.ConnectInfo) string {
	if ci.RemoteAddr == nil {
		return ""
	}
	return ci.RemoteAddr.String()
}

// jwtAuth handles a password shaped like a JWT: it allows or denies,
// never passes it on.
func (e *engine) jwtAuth(ci *broker.ConnectInfo) authnResult {
	if e.jwt == nil || !ci.HasPass || !looksLikeJWT(ci.Password) {
		return authnResult{d: next}
	}
	tc, err := e.jwt.verify(string(ci.Password))
	if err != nil {
		return authnResult{d: deny, method: "jwt", code: packet.NotAuthorized, err: err}
	}
	// The CONNECT username of a token client is its own choice, not
	// vouched for by the token: it is not the identity's username, so a
	// role substituting {username} refuses token clients.
	id := &broker.Identity{Tenant: tc.tenant, Roles: tc.roles, Principal: tc.principal}
	if e.cfg.JWT.DisconnectOnExpiry {
		id.ExpiresAt = tc.expires
	}
	// The token is kept with the connection's decision cache (never in
	// the Identity, which the store may keep) to verify it again under
	// the keys of a reload.
	return authnResult{d: allow, method: "jwt", id: id, cred: string(ci.Password)}
}

// passwordAuth checks a username and password against the users file,
// within the Checker's bounds.
func (s *Service) passwordAuth(ctx context.Context, e *engine, ci *broker.ConnectInfo) authnResult {
	if !ci.HasPass || ci.Username == "" {
		return authnResult{d: next}
	}
	u, ok := e.users[ci.Username]
	if !ok || u.Password == "" {
		return authnResult{d: next}
	}
	if err := s.checks.Check(ctx, u.Password, ci.Password, attemptOf(ci)); err != nil {
		code := checkRefusal(err)
		if code == 0 {
			code = packet.BadUsernameOrPassword
		}
		return authnResult{d: deny, method: "password", code: code, err: err}
	}
	return authnResult{d: allow, method: "password", id: e.userIdentity(u), cred: u.Password}
}

func (e *engine) userIdentity(u *User) *broker.Identity {
	return &broker.Identity{Tenant: e.userTenant(u), Username: u.Username, Roles: append([]string(nil), u.Roles...)}
}

// certAuth names the client by its verified certificate and maps the name
// to a configured certificate user or a users-file entry without password.
func (e *engine) certAuth(ci *broker.ConnectInfo) authnResult {
	if !e.cfg.Certificate.Enabled || len(ci.PeerCertificates) == 0 {
		return authnResult{d: next}
	}
	name := ""
	if ci.CertUsername {
		name = ci.Username
	} else if e.cfg.Certificate.Username == "subject" {
		name = ci.PeerCertificates[0].Subject.String()
	} else {
		name = ci.PeerCertificates[0].Subject.CommonName
	}
	if name == "" {
		return authnResult{d: next}
	}
	if cu, ok := e.certUsers[name]; ok {
		t := cu.Tenant
		if t == "" {
			t = e.cfg.DefaultTenant
		}
		return authnResult{d: allow, method: "certificate",
			id: &broker.Identity{Tenant: t, Username: name, Roles: append([]string(nil), cu.Roles...)}}
	}
	if u, ok := e.users[name]; ok && u.Password == "" && u.SCRAM == "" {
		return authnResult{d: allow, method: "certificate", id: e.userIdentity(u)}
	}
	return authnResult{d: next}
}

// anonymousAuth accepts a client that sent neither username nor password
// when anonymous access is on.
func (e *engine) anonymousAuth(ci *broker.ConnectInfo) authnResult {
	if !e.cfg.Anonymous.Enabled || ci.HasPass || ci.Username != "" {
		return authnResult{d: next}
	}
	return authnResult{d: allow, method: "anonymous", id: &broker.Identity{
		Tenant: e.cfg.Anonymous.Tenant, Roles: append([]string(nil), e.cfg.Anonymous.Roles...)}}
}

// CanPublish reports whether id may publish to name at qos with retain.
func (s *Service) CanPublish(id *broker.Identity, name string, qos byte, retain bool) bool {
	st := s.cache.lookup(id, s.cur.Load())
	if st == nil {
		return false
	}
	lim := st.publish(name)
	if retain {
		return int8(qos) <= lim.maxRetainQoS
	}
	return int8(qos) <= lim.maxQoS
}

// CanSubscribe grants a subscription at min(qos, role max_qos) when an
// allow filter covers every topic filter can match and no deny filter
// covers it; the deny filters that share only some topics with it come
// back in the decision's Deny, for the broker to filter at delivery (the
// slice is shared between decisions and never written to).
func (s *Service) CanSubscribe(id *broker.Identity, filter string, qos byte) broker.SubscribeDecision {
	st := s.cache.lookup(id, s.cur.Load())
	if st == nil {
		return broker.SubscribeDecision{}
	}
	lim := st.subscribe(filter)
	if lim.maxQoS < 0 {
		return broker.SubscribeDecision{}
	}
	return broker.SubscribeDecision{OK: true, MaxQoS: min(qos, byte(lim.maxQoS)), Deny: lim.deny}
}

// CanReceive reports whether id may receive a message published to name
// under the running configuration: an allow filter of a subscribing role
// matches it and no deny filter does. It is not cached (the broker asks
// it only when re-checking queued messages).
func (s *Service) CanReceive(id *broker.Identity, name string) bool {
	st := s.cache.lookup(id, s.cur.Load())
	return st != nil && st.g != nil && st.g.receivable(name)
}

// Roles returns the names of the configured roles (for tools and logs).
func (s *Service) Roles() []string {
	e := s.cur.Load()
	names := make([]string, 0, len(e.roles))
	for n := range maps.Keys(e.roles) {
		names = append(names, n)
	}
	return names
}
