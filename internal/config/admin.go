package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/petrel-mqtt/petrel/internal/auth"
)

// DefaultAdminAddress is admin.address's default: the admin API on
// loopback.
const DefaultAdminAddress = "127.0.0.1:9883"

// Admin configures the admin HTTP listener (internal/admin): health
// probes, /metrics and the REST API. docs/security.md says who may do
// what.
type Admin struct {
	// Address is host:port; "" turns the listener off.
	Address string   `yaml:"address"`
	TLS     AdminTLS `yaml:"tls"`
	// OpenOnLoopback, with an auth: section, serves loopback clients
	// without credentials (as administrators); off, they authenticate
	// like everyone else.
	OpenOnLoopback bool `yaml:"open_on_loopback"`
	// OperatorTenant is the tenant whose principals see and act on every
	// tenant; default auth.default_tenant.
	OperatorTenant string `yaml:"operator_tenant"`
}

// AdminTLS serves the admin API over HTTPS when CertFile is set.
type AdminTLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	MinVersion string `yaml:"min_version"` // "1.2" (default) or "1.3"
}

func defaultAdmin() Admin { return Admin{Address: DefaultAdminAddress} }

// validateAdmin checks the admin: section's values.
func (c *Config) validateAdmin(bad func(path, format string, args ...any)) {
	a := c.Admin
	if a.Address != "" {
		if _, _, err := net.SplitHostPort(a.Address); err != nil {
			bad("admin.address", "%q is not host:port (or empty: off)", a.Address)
		}
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		bad("admin.tls", "cert_file and key_file go together")
	}
	if a.TLS.MinVersion != "" && a.TLS.MinVersion != "1.2" && a.TLS.MinVersion != "1.3" {
		bad("admin.tls.min_version", "%q is not one of 1.2, 1.3", a.TLS.MinVersion)
	}
	if a.OperatorTenant != "" && !safeTenant(a.OperatorTenant) {
		bad("admin.operator_tenant", "%q must be one topic level without + # / or NUL", a.OperatorTenant)
	}
	if a.OpenOnLoopback && c.Auth == nil {
		bad("admin.open_on_loopback", "only with an auth: section (without one, loopback is open anyway)")
	}
}

// checkAdmin runs the admin: checks that need the outside world: the
// certificate loads, and an address off loopback has someone to
// authenticate.
func (c *Config) checkAdmin() error {
	a := c.Admin
	if a.Address != "" && c.Auth == nil && !IsLoopback(a.Address) {
		return fmt.Errorf("admin.address: %q is not a loopback address and there is no auth: section, so no one could authenticate to the admin API", a.Address)
	}
	if a.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(a.TLS.CertFile, a.TLS.KeyFile); err != nil {
			return fmt.Errorf("admin.tls: %w", err)
		}
	}
	return nil
}

// AdminOperatorTenant returns the tenant whose principals see every
// tenant: admin.operator_tenant, else auth.default_tenant.
func (c *Config) AdminOperatorTenant() string {
	if c.Admin.OperatorTenant != "" {
		return c.Admin.OperatorTenant
	}
	if c.Auth != nil && c.Auth.DefaultTenant != "" {
		return c.Auth.DefaultTenant
	}
	return auth.DefaultTenant
}

// safeTenant reports whether s is one topic level without wildcards or
// NUL, as tenants are.
func safeTenant(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#/\x00")
}
