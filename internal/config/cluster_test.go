package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClusterSection: no cluster: section means no cluster; a section gets
// its defaults (name, replicas 3, data_dir under store.data_dir); bad
// values are refused naming their key, all at once.
func TestClusterSection(t *testing.T) {
	const ok = "cluster: {node: n1, listen: '127.0.0.1:6250', peers: ['nats://127.0.0.1:6251', '127.0.0.1:6252']}\n"
	for _, tt := range []struct {
		name, file string
		err        string // in Parse, or else in Check
		warn       string
	}{
		{"none", "", "", ""},
		{"three nodes", ok, "", ""},
		{"own address among the peers", "cluster: {node: n1, listen: '127.0.0.1:6250', peers: ['127.0.0.1:6250', '127.0.0.1:6251', '127.0.0.1:6252']}\n", "", ""},
		{"replicas above the nodes", "cluster: {node: n1, listen: '127.0.0.1:6250', replicas: 3, peers: ['127.0.0.1:6251']}\n", "", "cluster.replicas 3 is capped at 2"},
		{"no node", "cluster: {listen: '127.0.0.1:6250'}\n", "cluster.node: required", ""},
		{"node not a token", "cluster: {node: 'n 1', listen: '127.0.0.1:6250'}\n", "cluster.node", ""},
		{"node too long", "cluster: {node: " + strings.Repeat("n", 65) + ", listen: '127.0.0.1:6250'}\n", "cluster.node", ""},
		{"no listen", "cluster: {node: n1}\n", "cluster.listen: required", ""},
		{"listen without port", "cluster: {node: n1, listen: '127.0.0.1'}\n", "cluster.listen", ""},
		{"listen port 0", "cluster: {node: n1, listen: '127.0.0.1:0'}\n", "cluster.listen", ""},
		{"peer scheme", "cluster: {node: n1, listen: '127.0.0.1:6250', peers: ['http://127.0.0.1:6251']}\n", "cluster.peers[0]", ""},
		{"peer port", "cluster: {node: n1, listen: '127.0.0.1:6250', peers: ['nats://127.0.0.1:99999']}\n", "cluster.peers[0]", ""},
		{"peer twice", "cluster: {node: n1, listen: '127.0.0.1:6250', peers: ['127.0.0.1:6251', 'nats://127.0.0.1:6251']}\n", "cluster.peers[1]", ""},
		{"replicas 0 is the default", "cluster: {node: n1, listen: '127.0.0.1:6250', replicas: 0, peers: ['127.0.0.1:6251', '127.0.0.1:6252']}\n", "", ""},
		{"replicas negative", "cluster: {node: n1, listen: '127.0.0.1:6250', replicas: -1}\n", "cluster.replicas", ""},
		{"name not a token", "cluster: {name: 'a.b', node: n1, listen: '127.0.0.1:6250'}\n", "cluster.name", ""},
		{"half TLS", "cluster: {node: n1, listen: '127.0.0.1:6250', tls: {cert_file: c.pem}}\n", "cluster.tls", ""},
		{"TLS without CA", "cluster: {node: n1, listen: '127.0.0.1:6250', tls: {cert_file: c.pem, key_file: k.pem}}\n", "mutual TLS", ""},
		{"TLS files missing", "cluster: {node: n1, listen: '127.0.0.1:6250', tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem, ca_file: /nonexistent/ca.pem}}\n", "cluster.tls", ""},
		{"plain routes off loopback", "cluster: {node: n1, listen: '0.0.0.0:6250'}\n", "is not a loopback address and cluster.tls is not set", ""},
		{"plain routes allowed", "cluster: {node: n1, listen: '0.0.0.0:6250', allow_plain_routes: true}\n", "", ""},
		{"advertise without port", "cluster: {node: n1, listen: '127.0.0.1:6250', advertise: 'proxy'}\n", "cluster.advertise", ""},
		{"plain routes advertised off loopback", "cluster: {node: n1, listen: '127.0.0.1:6250', advertise: '10.0.0.5:7250'}\n", "cluster.advertise", ""},
		{"own advertised address among the peers", "cluster: {node: n1, listen: '127.0.0.1:6250', advertise: '127.0.0.1:7250', replicas: 3, peers: ['127.0.0.1:7250', '127.0.0.1:6251']}\n", "", "cluster.replicas 3 is capped at 2"},
		{"advertise through a loopback proxy", "cluster: {node: n1, listen: '127.0.0.1:6250', advertise: '127.0.0.1:7250'}\n", "", ""},
		{"ephemeral", "store: {type: memory}\n" + ok, "not with store.type memory", ""},
		{"inbox and tombstone", "cluster: {node: n1, listen: '127.0.0.1:6250', inbox_bytes: 16MiB, tombstone_ttl: 10m}\n", "", ""},
		{"inbox negative", "cluster: {node: n1, listen: '127.0.0.1:6250', inbox_bytes: -1}\n", "cluster.inbox_bytes", ""},
		{"tombstone negative", "cluster: {node: n1, listen: '127.0.0.1:6250', tombstone_ttl: -1s}\n", "cluster.tombstone_ttl", ""},
		{"message log bounds", "cluster: {node: n1, listen: '127.0.0.1:6250', message_retention: 24h, message_bytes: 1GiB}\n", "", ""},
		{"message log without a byte bound", "cluster: {node: n1, listen: '127.0.0.1:6250', message_bytes: 0}\n", "", "cluster.message_bytes 0: the message log has no bound in bytes"},
		{"message retention negative", "cluster: {node: n1, listen: '127.0.0.1:6250', message_retention: -1h}\n", "cluster.message_retention", ""},
		{"message bytes negative", "cluster: {node: n1, listen: '127.0.0.1:6250', message_bytes: -1}\n", "cluster.message_bytes", ""},
		{"will after", "cluster: {node: n1, listen: '127.0.0.1:6250', will_after: 30s}\n", "", ""},
		{"will after negative", "cluster: {node: n1, listen: '127.0.0.1:6250', will_after: -1s}\n", "cluster.will_after", ""},
		{"unknown key", "cluster: {node: n1, listen: '127.0.0.1:6250', replica: 2}\n", "cluster.replica: unknown key", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), nil)
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
			if got := strings.Join(c.Warnings, "\n"); !strings.Contains(got, tt.warn) || (tt.warn == "" && got != "") {
				t.Fatalf("warnings %q, want %q", got, tt.warn)
			}
			if tt.file == "" {
				if c.Cluster != nil || c.ClusterDataDir() != "" {
					t.Fatalf("a cluster without a cluster: section: %+v", c.Cluster)
				}
				return
			}
			if c.Cluster.Name != DefaultClusterName || c.Cluster.Replicas != DefaultClusterReplicas {
				t.Fatalf("name %q, replicas %d: want the defaults", c.Cluster.Name, c.Cluster.Replicas)
			}
			if want := filepath.Join(c.Store.DataDir, "cluster"); c.ClusterDataDir() != want {
				t.Fatalf("data_dir %q, want %q", c.ClusterDataDir(), want)
			}
		})
	}
}

// TestClusterMessageLogKeys: cluster.message_retention and
// cluster.message_bytes default to 7 days and 10 GiB when left out; a
// value given is kept, message_bytes 0 (no bound in bytes) included.
func TestClusterMessageLogKeys(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		retention  time.Duration
		bytes      ByteSize
	}{
		{"defaults", "cluster: {node: n1, listen: '127.0.0.1:6250'}\n", 168 * time.Hour, 10 << 30},
		{"set", "cluster: {node: n1, listen: '127.0.0.1:6250', message_retention: 36h, message_bytes: 512MiB}\n", 36 * time.Hour, 512 << 20},
		{"no byte bound", "cluster: {node: n1, listen: '127.0.0.1:6250', message_bytes: 0}\n", 168 * time.Hour, 0},
		{"retention 0 is the default", "cluster: {node: n1, listen: '127.0.0.1:6250', message_retention: 0s}\n", 168 * time.Hour, 10 << 30},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Cluster.MessageRetention != tt.retention || c.Cluster.MessageBytes != tt.bytes {
				t.Fatalf("message_retention %s, message_bytes %d; want %s, %d", c.Cluster.MessageRetention, c.Cluster.MessageBytes, tt.retention, tt.bytes)
			}
		})
	}
}

// TestClusterSizeAndPaths: the cluster's size counts this node once even
// when it is among the peers; relative paths become the file's folder's.
func TestClusterSizeAndPaths(t *testing.T) {
	c, err := Parse([]byte("cluster: {node: n1, listen: '127.0.0.1:6250', data_dir: js, peers: ['127.0.0.1:6250', '127.0.0.1:6251', 'tls://127.0.0.1:6252']}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.ClusterSize(); n != 3 {
		t.Fatalf("size %d, want 3", n)
	}
	c.ResolvePaths("/etc/petrel")
	if got := c.ClusterDataDir(); got != "/etc/petrel/js" {
		t.Fatalf("data_dir %q, want /etc/petrel/js", got)
	}
}

// TestClusterTLSConfig: cluster.tls gives mutual TLS: this node's
// certificate, the CA for both directions, peer certificates required.
func TestClusterTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	file := "cluster: {node: n1, listen: '0.0.0.0:6250', tls: {cert_file: " + certFile + ", key_file: " + keyFile + ", ca_file: " + certFile + "}}\n"
	c, err := Parse([]byte(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	tc, err := c.ClusterTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ClientCAs == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert || tc.MinVersion < tls.VersionTLS12 {
		t.Fatalf("TLS config %+v: want this node's certificate, the CA both ways, client certificates required", tc)
	}
	none, err := Parse([]byte("cluster: {node: n1, listen: '127.0.0.1:6250'}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tc, err := none.ClusterTLSConfig(); tc != nil || err != nil {
		t.Fatalf("no cluster.tls: %v, %v; want nil, nil", tc, err)
	}
}

// writeSelfSigned writes a self-signed certificate (its own CA) and key.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "n1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
