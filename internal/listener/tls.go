package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// certificates holds the server certificate behind an atomic pointer so it
// can be swapped while handshakes run.
type certificates struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificates(certFile, keyFile string) (*certificates, error) {
	c := &certificates{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificates) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("listener: load certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certificates) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

func tlsVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q unsupported; want 1.2 or 1.3", s)
}

func clientAuth(s string) (tls.ClientAuthType, error) {
	switch s {
	case "", "none":
		return tls.NoClientCert, nil
	case "optional":
		return tls.VerifyClientCertIfGiven, nil
	case "require":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("%q unknown; want none, optional or require", s)
}

// newTLSConfig builds the server TLS configuration for a validated c.
func newTLSConfig(c Config, certs *certificates) (*tls.Config, error) {
	minVersion, err := tlsVersion(c.MinVersion)
	if err != nil {
		return nil, err
	}
	auth, err := clientAuth(c.ClientAuth)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: certs.get,
		ClientAuth:     auth,
	}
	if c.isWS() {
		// WebSocket upgrades need HTTP/1.1; never negotiate h2.
		tc.NextProtos = []string{"http/1.1"}
	}
	if auth != tls.NoClientCert {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("listener %q: client_ca_file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listener %q: client_ca_file %s: no PEM certificates found", c.Name, c.ClientCAFile)
		}
		tc.ClientCAs = pool
	}
	return tc, nil
}

func closeQuietly(c net.Conn) {
	// Closing a connection we are abandoning: its error changes nothing.
	_ = c.Close()
}

// isTemporary reports whether an accept error is worth retrying: a timeout,
// running out of file descriptors, or a connection aborted before accept.
func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED)
}

// CheckFiles loads what a tls or wss listener of c would load at start:
// the certificate chain with its key (they must match) and the client CA
// bundle. It names the field and file of each problem, all at once.
func (c Config) CheckFiles() error {
	if !c.isTLS() {
		return nil
	}
	var errs []error
	if c.CertFile != "" && c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err))
		}
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("client_ca_file: %w", err))
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			errs = append(errs, fmt.Errorf("client_ca_file %s: no PEM certificates found", c.ClientCAFile))
		}
	}
	return errors.Join(errs...)
}
