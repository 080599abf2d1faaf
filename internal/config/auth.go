package config

import (
	"cmp"
	"fmt"
	"net"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
)

// Auth is the auth: section. Its presence turns authentication on: without
// it every client is anonymous (and only loopback listeners are allowed
// unless allow_anonymous_remote); with it, anonymous clients are refused
// unless anonymous.enabled. See docs/security.md.
type Auth struct {
	// DefaultTenant is the tenant of users-file and certificate clients
	// that name none; default "ssni".
	DefaultTenant string `yaml:"default_tenant"`
	// UsersFile is the YAML users file (petrel passwd makes its hashes);
	// re-read on SIGHUP.
	UsersFile string `yaml:"users_file"`
	// UnauthorizedPublish: "close" (default) or "ack-and-drop".
	UnauthorizedPublish string            `yaml:"unauthorized_publish"`
	Anonymous           AuthAnonymous     `yaml:"anonymous"`
	JWT                 AuthJWT           `yaml:"jwt"`
	Certificate         AuthCertificate   `yaml:"certificate"`
	Roles               []AuthRole        `yaml:"roles"` // replace the default roles when given
	TokenEndpoint       AuthTokenEndpoint `yaml:"token_endpoint"`
	// PasswordChecks bound the bcrypt/argon2id checks of CONNECT
	// passwords and token endpoint secrets (docs/security.md).
	PasswordChecks AuthPasswordChecks `yaml:"password_checks"`
}

// AuthPasswordChecks bounds password hash checks: slots, argon2id memory
// and wait, and the failure limits per username and per address. Applied
// at start; a change needs a restart.
type AuthPasswordChecks struct {
	MaxConcurrent   int           `yaml:"max_concurrent"`   // 0: GOMAXPROCS/2, at least 1
	CPU             float64       `yaml:"cpu"`              // CPUs' worth of hashing per second; 0: GOMAXPROCS/2, 0.25 with one
	Memory          ByteSize      `yaml:"memory"`           // argon2id memory at once; default 256MiB
	MaxWait         time.Duration `yaml:"max_wait"`         // default 2s
	MaxWaiting      int           `yaml:"max_waiting"`      // checks waiting at once; default 64
	UserFailures    int           `yaml:"user_failures"`    // per failure_window; default 5
	AddressFailures int           `yaml:"address_failures"` // per failure_window; default 20
	FailureWindow   time.Duration `yaml:"failure_window"`   // default 1m
	MaxTracked      int           `yaml:"max_tracked"`      // names, addresses, pairs each; default 10000
	// RefusalDelay holds the CONNACK of a CONNECT refused by the failure
	// limits; unset: auth.DefaultRefusalDelay, 0: off.
	RefusalDelay *time.Duration `yaml:"refusal_delay"`
	// RefusalHold and RefusalHoldPerAddress bound the connections held so
	// (broker.Options.HeldRefusals, HeldRefusalsPerAddress); 0: default.
	RefusalHold           int `yaml:"refusal_hold"`
	RefusalHoldPerAddress int `yaml:"refusal_hold_per_address"`
}

// AuthAnonymous configures clients that send no username and no password.
type AuthAnonymous struct {
	Enabled bool     `yaml:"enabled"`
	Tenant  string   `yaml:"tenant"` // default "anonymous"
	Roles   []string `yaml:"roles"`
}

// AuthJWT configures JWTs in the CONNECT password; any key enables it.
type AuthJWT struct {
	Secret             string        `yaml:"secret"`
	SecretFile         string        `yaml:"secret_file"`
	PublicKeyFile      string        `yaml:"public_key_file"`
	JWKSFile           string        `yaml:"jwks_file"`
	KID                string        `yaml:"kid"`
	Algorithms         []string      `yaml:"algorithms"`
	Issuer             string        `yaml:"issuer"`
	Audience           string        `yaml:"audience"`
	ClockSkew          time.Duration `yaml:"clock_skew"`   // default 30s
	TenantClaim        string        `yaml:"tenant_claim"` // default sub
	ScopeClaim         string        `yaml:"scope_claim"`  // default mqttScope
	DisconnectOnExpiry bool          `yaml:"disconnect_on_expiry"`
}

// AuthCertificate configures identities from TLS client certificates.
type AuthCertificate struct {
	Enabled  bool           `yaml:"enabled"`
	Username string         `yaml:"username"` // cn (default) or subject
	Users    []AuthCertUser `yaml:"users"`
}

// AuthCertUser maps a certificate name to a tenant and roles.
type AuthCertUser struct {
	Name   string   `yaml:"name"`
	Tenant string   `yaml:"tenant"`
	Roles  []string `yaml:"roles"`
}

// AuthRole is a role: activity, max QoS, retain, topic filters.
type AuthRole struct {
	Name     string   `yaml:"name"`
	Activity string   `yaml:"activity"` // publish, subscribe, both
	MaxQoS   int      `yaml:"max_qos"`
	Retain   bool     `yaml:"retain"`
	Topics   []string `yaml:"topics"`
	Deny     []string `yaml:"deny"`
}

// AuthTokenEndpoint configures the HTTP token endpoint (POST /oauth/token).
type AuthTokenEndpoint struct {
	Address  string          `yaml:"address"` // "" : off
	KeyFile  string          `yaml:"key_file"`
	Alg      string          `yaml:"alg"` // default: the key's (HS256, RS256, ES256, EdDSA)
	KID      string          `yaml:"kid"`
	TTL      time.Duration   `yaml:"ttl"` // default 1h
	Issuer   string          `yaml:"issuer"`
	Audience string          `yaml:"audience"`
	Rate     float64         `yaml:"rate"`  // requests per second per client address; default 1
	Burst    int             `yaml:"burst"` // default 5
	Clients  []AuthAPIClient `yaml:"clients"`
	// TrustedProxies are addresses or CIDR networks of reverse proxies
	// whose X-Forwarded-For names the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// AuthAPIClient is an API client of the token endpoint.
type AuthAPIClient struct {
	ClientID   string   `yaml:"client_id"`
	SecretHash string   `yaml:"secret_hash"`
	Tenant     string   `yaml:"tenant"`
	Roles      []string `yaml:"roles"`
}

func (a *Auth) applyDefaults() {
	if a.DefaultTenant == "" {
		a.DefaultTenant = auth.DefaultTenant
	}
	if a.UnauthorizedPublish == "" {
		a.UnauthorizedPublish = "close"
	}
	if a.Anonymous.Tenant == "" {
		a.Anonymous.Tenant = auth.DefaultAnonymousTenant
	}
	if a.JWT.ClockSkew == 0 {
		a.JWT.ClockSkew = 30 * time.Second
	}
	if a.JWT.TenantClaim == "" {
		a.JWT.TenantClaim = "sub"
	}
	if a.JWT.ScopeClaim == "" {
		a.JWT.ScopeClaim = "mqttScope"
	}
	if a.Certificate.Username == "" {
		a.Certificate.Username = "cn"
	}
	te := &a.TokenEndpoint
	if te.TTL == 0 {
		te.TTL = time.Hour
	}
	if te.Rate == 0 {
		te.Rate = 1
	}
	if te.Burst == 0 {
		te.Burst = 5
	}
	if te.Issuer == "" {
		te.Issuer = a.JWT.Issuer
	}
	if te.Audience == "" {
		te.Audience = a.JWT.Audience
	}
	pc := &a.PasswordChecks
	pc.Memory = cmp.Or(pc.Memory, auth.DefaultCheckMemory)
	pc.MaxWait = cmp.Or(pc.MaxWait, auth.DefaultCheckWait)
	pc.MaxWaiting = cmp.Or(pc.MaxWaiting, auth.DefaultMaxWaiting)
	pc.UserFailures = cmp.Or(pc.UserFailures, auth.DefaultUserFailures)
	pc.AddressFailures = cmp.Or(pc.AddressFailures, auth.DefaultAddressFailures)
	pc.FailureWindow = cmp.Or(pc.FailureWindow, auth.DefaultFailureWindow)
	pc.MaxTracked = cmp.Or(pc.MaxTracked, auth.DefaultMaxTracked)
	if pc.RefusalDelay == nil {
		d := auth.DefaultRefusalDelay
		pc.RefusalDelay = &d
	}
	pc.RefusalHold = cmp.Or(pc.RefusalHold, broker.DefaultHeldRefusals)
	pc.RefusalHoldPerAddress = cmp.Or(pc.RefusalHoldPerAddress, broker.DefaultHeldRefusalsPerAddress)
}

// validate checks the auth: section's values (files are read by Check).
func (a *Auth) validate(bad func(path, format string, args ...any)) {
	oneOf := func(path, v string, allowed ...string) {
		for _, x := range allowed {
			if v == x {
				return
			}
		}
		bad(path, "%q is not one of %v", v, allowed)
	}
	oneOf("auth.unauthorized_publish", a.UnauthorizedPublish, "close", "ack-and-drop")
	oneOf("auth.certificate.username", a.Certificate.Username, "cn", "subject")
	if a.JWT.ClockSkew < 0 {
		bad("auth.jwt.clock_skew", "must not be negative")
	}
	if a.JWT.Secret != "" && a.JWT.SecretFile != "" {
		bad("auth.jwt.secret", "set secret or secret_file, not both")
	}
	if a.JWT.Secret != "" && len(a.JWT.Secret) < auth.MinSecretLen {
		bad("auth.jwt.secret", "%d bytes; want at least %d", len(a.JWT.Secret), auth.MinSecretLen)
	}
	for i, alg := range a.JWT.Algorithms {
		oneOf(fmt.Sprintf("auth.jwt.algorithms[%d]", i), alg, "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
			"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
	}
	names := map[string]bool{}
	for i, r := range a.Roles {
		p := fmt.Sprintf("auth.roles[%d]", i)
		if r.MaxQoS < 0 || r.MaxQoS > 2 {
			bad(p+".max_qos", "%d out of range 0..2", r.MaxQoS)
			continue
		}
		if err := auth.ValidateRole(a.role(r)); err != nil {
			bad(p, "%v", err)
		}
		if names[r.Name] {
			bad(p+".name", "%q defined twice", r.Name)
		}
		names[r.Name] = true
	}
	te := a.TokenEndpoint
	if te.Address != "" {
		if _, _, err := net.SplitHostPort(te.Address); err != nil {
			bad("auth.token_endpoint.address", "%q is not host:port", te.Address)
		}
		if te.KeyFile == "" {
			bad("auth.token_endpoint.key_file", "required when address is set")
		}
		if len(te.Clients) == 0 {
			bad("auth.token_endpoint.clients", "required when address is set")
		}
	}
	if te.TTL < 0 {
		bad("auth.token_endpoint.ttl", "must not be negative")
	}
	if te.Rate < 0 {
		bad("auth.token_endpoint.rate", "must not be negative")
	}
	if te.Burst < 0 {
		bad("auth.token_endpoint.burst", "must not be negative")
	}
	if _, err := auth.ParseTrustedProxies(te.TrustedProxies); err != nil {
		bad("auth.token_endpoint.trusted_proxies", "%v", err)
	}
	pc := a.PasswordChecks
	for _, f := range []struct {
		key string
		neg bool
	}{
		{"max_concurrent", pc.MaxConcurrent < 0}, {"cpu", pc.CPU < 0}, {"memory", pc.Memory < 0}, {"max_wait", pc.MaxWait < 0}, {"max_waiting", pc.MaxWaiting < 0},
		{"user_failures", pc.UserFailures < 0}, {"address_failures", pc.AddressFailures < 0},
		{"failure_window", pc.FailureWindow < 0}, {"max_tracked", pc.MaxTracked < 0},
		{"refusal_delay", pc.RefusalDelay != nil && *pc.RefusalDelay < 0},
		{"refusal_hold", pc.RefusalHold < 0}, {"refusal_hold_per_address", pc.RefusalHoldPerAddress < 0},
	} {
		if f.neg {
			bad("auth.password_checks."+f.key, "must not be negative")
		}
	}
	for i, cl := range te.Clients {
		p := fmt.Sprintf("auth.token_endpoint.clients[%d]", i)
		if cl.ClientID == "" {
			bad(p+".client_id", "required")
		}
		if err := auth.CheckHash(cl.SecretHash); err != nil {
			bad(p+".secret_hash", "%v", err)
		}
		if cl.Tenant == "" {
			bad(p+".tenant", "required")
		}
	}
}

// limits converts the section for auth.NewChecker.
func (pc AuthPasswordChecks) limits() auth.PasswordChecks {
	return auth.PasswordChecks{MaxConcurrent: pc.MaxConcurrent, CPU: pc.CPU, Memory: int64(pc.Memory), MaxWait: pc.MaxWait, MaxWaiting: pc.MaxWaiting,
		UserFailures: pc.UserFailures, AddressFailures: pc.AddressFailures, FailureWindow: pc.FailureWindow,
		MaxTracked: pc.MaxTracked, RefusalDelay: pc.refusalDelay()}
}

// refusalDelay is refusal_delay: auth.DefaultRefusalDelay when unset.
func (pc AuthPasswordChecks) refusalDelay() time.Duration {
	if pc.RefusalDelay == nil {
		return auth.DefaultRefusalDelay
	}
	return *pc.RefusalDelay
}

func (a *Auth) role(r AuthRole) auth.Role {
	return auth.Role{Name: r.Name, Activity: r.Activity, MaxQoS: byte(r.MaxQoS), Retain: r.Retain, Topics: r.Topics, Deny: r.Deny}
}

// AuthConfig returns the security configuration for auth.New; ok is false
// when the file has no auth: section (every client is anonymous).
func (c *Config) AuthConfig() (ac auth.Config, ok bool) {
	a := c.Auth
	if a == nil {
		return auth.Config{}, false
	}
	ac = auth.Config{
		DefaultTenant: a.DefaultTenant,
		UsersFile:     a.UsersFile,
		Anonymous:     auth.Anonymous{Enabled: a.Anonymous.Enabled, Tenant: a.Anonymous.Tenant, Roles: a.Anonymous.Roles},
		JWT: auth.JWTConfig{
			Secret: a.JWT.Secret, SecretFile: a.JWT.SecretFile, PublicKeyFile: a.JWT.PublicKeyFile, JWKSFile: a.JWT.JWKSFile,
			KID: a.JWT.KID, Algorithms: a.JWT.Algorithms, Issuer: a.JWT.Issuer, Audience: a.JWT.Audience,
			ClockSkew: a.JWT.ClockSkew, TenantClaim: a.JWT.TenantClaim, ScopeClaim: a.JWT.ScopeClaim,
			DisconnectOnExpiry: a.JWT.DisconnectOnExpiry,
		},
		Certificate: auth.Certificate{Enabled: a.Certificate.Enabled, Username: a.Certificate.Username},
		Checks:      a.PasswordChecks.limits(),
	}
	for _, u := range a.Certificate.Users {
		ac.Certificate.Users = append(ac.Certificate.Users, auth.CertUser{Name: u.Name, Tenant: u.Tenant, Roles: u.Roles})
	}
	if a.Roles != nil {
		ac.Roles = []auth.Role{}
		for _, r := range a.Roles {
			ac.Roles = append(ac.Roles, a.role(r))
		}
	}
	return ac, true
}

// TokenEndpointConfig loads the token endpoint's signing key and returns
// its configuration; ok is false when the endpoint is off.
func (c *Config) TokenEndpointConfig() (tc auth.TokenEndpointConfig, ok bool, err error) {
	if c.Auth == nil || c.Auth.TokenEndpoint.Address == "" {
		return tc, false, nil
	}
	te := c.Auth.TokenEndpoint
	sg, err := auth.LoadSigner(te.KeyFile, te.Alg, te.KID)
	if err != nil {
		return tc, true, fmt.Errorf("auth.token_endpoint.key_file: %w", err)
	}
	proxies, err := auth.ParseTrustedProxies(te.TrustedProxies)
	if err != nil {
		return tc, true, fmt.Errorf("auth.token_endpoint.trusted_proxies: %w", err)
	}
	tc = auth.TokenEndpointConfig{Signer: sg, TTL: te.TTL, Issuer: te.Issuer, Audience: te.Audience,
		ScopeClaim: c.Auth.JWT.ScopeClaim, Rate: te.Rate, Burst: te.Burst, TrustedProxies: proxies}
	for _, cl := range te.Clients {
		tc.Clients = append(tc.Clients, auth.APIClient{ID: cl.ClientID, SecretHash: cl.SecretHash, Tenant: cl.Tenant, Roles: cl.Roles})
	}
	return tc, true, nil
}

// checkAuth loads the users file and keys as serve would, and checks that
// tokens from the token endpoint pass the JWT settings.
func (c *Config) checkAuth() error {
	ac, ok := c.AuthConfig()
	if !ok {
		return nil
	}
	svc, err := auth.New(ac, auth.Options{})
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	tc, on, err := c.TokenEndpointConfig()
	if err != nil || !on {
		return err
	}
	if _, err := auth.NewTokenHandler(tc, auth.Options{}); err != nil {
		return fmt.Errorf("auth.token_endpoint: %w", err)
	}
	tok, err := tc.Signer.Issue(auth.Claims{Tenant: "check", TTL: time.Minute, Issuer: tc.Issuer, Audience: tc.Audience, ScopeClaim: tc.ScopeClaim})
	if err == nil {
		err = svc.Verify(tok)
	}
	if err != nil {
		return fmt.Errorf("auth.token_endpoint: its tokens would be refused by auth.jwt: %w", err)
	}
	return nil
}
