package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ResolvePaths makes every relative file and folder path of the
// configuration absolute against base, the configuration file's folder
// (or the working directory when there is no file): store.data_dir,
// log.audit_file, the listeners' certificate, key and CA files, the
// cluster's data_dir and TLS files, the users
// file, the JWT key files and the token endpoint's key. A broker started
// from another folder then opens the same store and files, and the logs
// show where they are.
func (c *Config) ResolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.Store.DataDir)
	abs(&c.Log.AuditFile)
	for i := range c.Listeners {
		t := &c.Listeners[i].TLS
		abs(&t.CertFile)
		abs(&t.KeyFile)
		abs(&t.ClientCAFile)
	}
	if cl := c.Cluster; cl != nil {
		abs(&cl.DataDir)
		abs(&cl.TLS.CertFile)
		abs(&cl.TLS.KeyFile)
		abs(&cl.TLS.CAFile)
	}
	if a := c.Auth; a != nil {
		abs(&a.UsersFile)
		abs(&a.JWT.SecretFile)
		abs(&a.JWT.PublicKeyFile)
		abs(&a.JWT.JWKSFile)
		abs(&a.TokenEndpoint.KeyFile)
	}
}

// checkFiles checks the store folder and the audit file without creating
// either: an existing data_dir must be a folder; an existing audit file
// must open for appending, else its folder must exist.
func (c *Config) checkFiles() error {
	var errs []error
	if c.Store.Type == "disk" {
		if st, err := os.Stat(c.Store.DataDir); err == nil && !st.IsDir() {
			errs = append(errs, fmt.Errorf("store.data_dir: %s is not a folder", c.Store.DataDir))
		}
	}
	if p := c.Log.AuditFile; p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		switch {
		case err == nil:
			_ = f.Close() // opened only to check it
		case errors.Is(err, fs.ErrNotExist):
			if st, derr := os.Stat(filepath.Dir(p)); derr != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("log.audit_file: folder of %s: does not exist", p))
			}
		default:
			errs = append(errs, fmt.Errorf("log.audit_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
