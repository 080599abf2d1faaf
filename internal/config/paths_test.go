package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDuplicateKeysRefused: a key given twice in one mapping is refused
// with its path and both lines, at any depth, instead of the last one
// silently winning; every other problem is reported with it.
func TestDuplicateKeysRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"limits: {max_inflight: 10}\nlimits: {max_inflight: 20}\n", "limits: duplicate key (line 2; first on line 1)"},
		{"limits:\n  max_inflight: 10\n  max_inflight: 20\n", "limits.max_inflight: duplicate key (line 3; first on line 2)"},
		{"listeners:\n  - {type: tcp, address: 'a:1', address: 'b:2'}\n", "listeners[0].address: duplicate key (line 2; first on line 2)"},
	} {
		_, err := Parse([]byte(tc.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	_, err := Parse([]byte("limits: {max_inflight: 10, max_inflight: 0}\nlog: {level: loud}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "duplicate key") || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("every problem at once: %v", err)
	}
}

// TestRelativePathsAgainstTheFile: Load resolves every relative path
// against the file's folder; absolute ones are kept.
func TestRelativePathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "petrel.yaml")
	y := `log: {audit_file: audit.log}
store: {data_dir: state/data}
listeners: [{type: tls, address: '127.0.0.1:0', tls: {cert_file: tls/cert.pem, key_file: /abs/key.pem, client_auth: require, client_ca_file: ca.pem}}]
auth:
  users_file: users.yaml
  jwt: {jwks_file: keys/jwks.json, public_key_file: pub.pem}
  token_endpoint: {address: '127.0.0.1:0', key_file: sign.key, clients: [{client_id: a, secret_hash: '$2a$04$0123456789012345678901uV0O7Rkzrk1mXBPfoy1Zh2PpzEd1v6W', tenant: A}]}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{
		{c.Log.AuditFile, filepath.Join(dir, "audit.log")},
		{c.Store.DataDir, filepath.Join(dir, "state/data")},
		{c.Listeners[0].TLS.CertFile, filepath.Join(dir, "tls/cert.pem")},
		{c.Listeners[0].TLS.KeyFile, "/abs/key.pem"},
		{c.Listeners[0].TLS.ClientCAFile, filepath.Join(dir, "ca.pem")},
		{c.Auth.UsersFile, filepath.Join(dir, "users.yaml")},
		{c.Auth.JWT.JWKSFile, filepath.Join(dir, "keys/jwks.json")},
		{c.Auth.JWT.PublicKeyFile, filepath.Join(dir, "pub.pem")},
		{c.Auth.TokenEndpoint.KeyFile, filepath.Join(dir, "sign.key")},
	} {
		if p[0] != p[1] {
			t.Errorf("path %q, want %q", p[0], p[1])
		}
	}
	// The default data_dir is a relative path too.
	if err := os.WriteFile(path, []byte("log: {level: info}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(path, nil); err != nil || c.Store.DataDir != filepath.Join(dir, "data") {
		t.Fatalf("default data_dir: %v, %v; want %s", c, err, filepath.Join(dir, "data"))
	}
}
