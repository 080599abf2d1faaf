package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// User is one entry of the users file. An entry with neither Password
// nor SCRAM can only be used through a client certificate naming it.
type User struct {
	Username string   `yaml:"username"`
	Password string   `yaml:"password"` // bcrypt or argon2id hash (petrel passwd)
	SCRAM    string   `yaml:"scram_sha256"`
	Tenant   string   `yaml:"tenant"` // default: the configured default tenant
	Roles    []string `yaml:"roles"`

	scram *SCRAMCredentials
}

// usersFile is the YAML document of a users file.
type usersFile struct {
	Users []User `yaml:"users"`
}

// LoadUsers reads a users file: unknown keys, duplicate usernames and
// malformed hashes are errors naming the entry.
func LoadUsers(path string) (map[string]*User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	users, err := ParseUsers(data)
	if err != nil {
		return nil, fmt.Errorf("auth: users file %s: %w", path, err)
	}
	return users, nil
}

// ParseUsers is LoadUsers on bytes.
func ParseUsers(data []byte) (map[string]*User, error) {
	var f usersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := make(map[string]*User, len(f.Users))
	var errs []error
	for i := range f.Users {
		u := &f.Users[i]
		p := fmt.Sprintf("users[%d]", i)
		if u.Username == "" {
			errs = append(errs, fmt.Errorf("%s.username: required", p))
			continue
		}
		if _, dup := out[u.Username]; dup {
			errs = append(errs, fmt.Errorf("%s.username: %q listed twice", p, u.Username))
		}
		if u.Password != "" {
			if err := CheckHash(u.Password); err != nil {
				errs = append(errs, fmt.Errorf("%s.password: %w", p, err))
			}
		}
		if u.SCRAM != "" {
			c, err := ParseSCRAMCredentials(u.SCRAM)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.scram_sha256: %w", p, err))
			}
			u.scram = &c
		}
		if u.Tenant != "" && !safeLevel(u.Tenant) {
			errs = append(errs, fmt.Errorf("%s.tenant: %q must be one topic level without + # / or NUL", p, u.Tenant))
		}
		out[u.Username] = u
	}
	return out, errors.Join(errs...)
}
