package listener

import "crypto/tls"

// ServerTLS is the TLS configuration of a server beside the listeners (the
// admin HTTP API): the listeners' certificate loading and version rules,
// with a certificate that Reload swaps while the server runs.
type ServerTLS struct {
	certs  *certificates
	config *tls.Config
}

// NewServerTLS loads certFile and keyFile; minVersion is "1.2" (also for
// "") or "1.3".
func NewServerTLS(certFile, keyFile, minVersion string) (*ServerTLS, error) {
	v, err := tlsVersion(minVersion)
	if err != nil {
		return nil, err
	}
	certs, err := loadCertificates(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &ServerTLS{certs: certs, config: &tls.Config{MinVersion: v, GetCertificate: certs.get}}, nil
}

// Config returns the server's TLS configuration; new handshakes get the
// certificate last loaded.
func (s *ServerTLS) Config() *tls.Config { return s.config }

// Reload re-reads the certificate and key; on error the old pair stays.
func (s *ServerTLS) Reload() error { return s.certs.reload() }
