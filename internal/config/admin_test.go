package config

import (
	"strings"
	"testing"
)

// TestAdminSection: admin.address defaults to loopback, an empty one
// turns the listener off, bad values are refused with their path, and an
// address off loopback needs an auth: section (nobody could authenticate
// otherwise).
func TestAdminSection(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		env        []string
		addr       string
		err        string // in Parse, or else in Check
	}{
		{"no file", "", nil, DefaultAdminAddress, ""},
		{"left out", "log: {level: info}\n", nil, DefaultAdminAddress, ""},
		{"off", "admin: {address: ''}\n", nil, "", ""},
		{"moved", "admin: {address: '127.0.0.1:9999'}\n", nil, "127.0.0.1:9999", ""},
		{"by environment", "", []string{"PETREL_ADMIN_ADDRESS=127.0.0.1:7000"}, "127.0.0.1:7000", ""},
		{"ctl's variables are not settings", "", []string{"PETREL_ADMIN_URL=http://x", "PETREL_ADMIN_USER=u",
			"PETREL_ADMIN_PASSWORD=p", "PETREL_ADMIN_TOKEN=t"}, DefaultAdminAddress, ""},
		{"misspelt variable", "", []string{"PETREL_ADMIN_ADRESS=x"}, "", "PETREL_ADMIN_ADRESS: no such setting"},
		{"not host:port", "admin: {address: nowhere}\n", nil, "", "admin.address"},
		{"half TLS", "admin: {tls: {cert_file: c.pem}}\n", nil, "", "admin.tls: cert_file and key_file go together"},
		{"TLS version", "admin: {tls: {min_version: '1.1'}}\n", nil, "", "admin.tls.min_version"},
		{"operator tenant", "auth: {}\nadmin: {operator_tenant: 'a/#'}\n", nil, "", "admin.operator_tenant"},
		{"open loopback without auth", "admin: {open_on_loopback: true}\n", nil, "", "admin.open_on_loopback"},
		{"unknown key", "admin: {adress: x}\n", nil, "", "admin.adress: unknown key"},
		{"remote without auth", "admin: {address: '0.0.0.0:9883'}\n", nil, "", "no one could authenticate"},
		{"remote with auth", "auth: {}\nadmin: {address: '0.0.0.0:9883'}\n", nil, "0.0.0.0:9883", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), tt.env)
			if err == nil {
				err = c.Check()
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Address != tt.addr {
				t.Fatalf("admin.address %q, want %q", c.Admin.Address, tt.addr)
			}
		})
	}
}

// TestAdminOperatorTenant: the operator tenant is admin.operator_tenant,
// else auth.default_tenant, else ssni.
func TestAdminOperatorTenant(t *testing.T) {
	for file, want := range map[string]string{
		"":                                   "ssni",
		"auth: {default_tenant: internal}\n": "internal",
		"auth: {}\nadmin: {operator_tenant: ops}\n": "ops",
	} {
		c, err := Parse([]byte(file), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AdminOperatorTenant(); got != want {
			t.Errorf("%q: operator tenant %q, want %q", file, got, want)
		}
	}
}
