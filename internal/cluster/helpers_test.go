package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
)

// fakeHost records what a node hands its broker.
type fakeHost struct {
	mu       sync.Mutex
	messages []remote
	retained []*session.Message
	kicked   []string
}

type remote struct {
	msg   *session.Message
	share string
}

func (h *fakeHost) DeliverRemote(msg *session.Message, share string) {
	h.mu.Lock()
	h.messages = append(h.messages, remote{msg, share})
	h.mu.Unlock()
}

func (h *fakeHost) ApplyRetained(msg *session.Message) {
	h.mu.Lock()
	h.retained = append(h.retained, msg)
	h.mu.Unlock()
}

func (h *fakeHost) KickRemote(key string) {
	h.mu.Lock()
	h.kicked = append(h.kicked, key)
	h.mu.Unlock()
}

// all returns the messages received so far.
func (h *fakeHost) all() []remote {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.messages)
}

// watched returns the node's watches.
func (m member) watched() []watchKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []watchKey
	for k := range m.mu.watches {
		out = append(out, k)
	}
	return out
}

// topics returns the topics of the messages received so far.
func (h *fakeHost) topics() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.messages))
	for i, m := range h.messages {
		out[i] = m.msg.Topic
	}
	return out
}

// has reports whether a message on topic was received.
func (h *fakeHost) has(topic string) bool {
	for _, t := range h.topics() {
		if t == topic {
			return true
		}
	}
	return false
}

// count returns how many messages on topic were received.
func (h *fakeHost) count(topic string) int {
	n := 0
	for _, t := range h.topics() {
		if t == topic {
			n++
		}
	}
	return n
}

func (h *fakeHost) retainedOf(topic string) []*session.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*session.Message
	for _, m := range h.retained {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

func (h *fakeHost) kicks() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.kicked...)
}

// freePorts returns n ports free on 127.0.0.1 right now, in this
// package's range (mqtttest.FreePorts).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	return mqtttest.FreePorts(t, n, mqtttest.ClusterPorts)
}

// testLogger logs the nodes' warnings to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// member is one started node and its fake broker.
type member struct {
	*Node
	host *fakeHost
}

// configs returns the configurations of a cluster of n nodes on free
// loopback ports.
func configs(t testing.TB, n, replicas int) []Config {
	t.Helper()
	ports := freePorts(t, n)
	out := make([]Config, n)
	for i := range n {
		var peers []string
		for j, p := range ports {
			if j != i {
				peers = append(peers, "127.0.0.1:"+strconv.Itoa(p))
			}
		}
		out[i] = Config{
			Name:     "test",
			Node:     fmt.Sprintf("n%d", i+1),
			Listen:   "127.0.0.1:" + strconv.Itoa(ports[i]),
			Peers:    peers,
			Replicas: replicas,
			DataDir:  t.TempDir(),
			Logger:   testLogger(t),
		}
	}
	return out
}

// startAll starts a node per configuration, in parallel (each waits for
// the others to elect a JetStream meta leader), binds a fake host to
// each, and closes them when the test ends.
func startAll(t testing.TB, cfgs []Config) []member {
	t.Helper()
	ms := make([]member, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := Start(ctx, c)
			if err != nil {
				errs[i] = err
				return
			}
			h := &fakeHost{}
			if err := n.Bind(h); err != nil {
				errs[i] = err
			}
			ms[i] = member{n, h}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range ms {
			if m.Node != nil {
				m.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return ms
}

// waitReady waits until every node is ready: its JetStream assets exist
// and it follows the message log.
func waitReady(t testing.TB, ms []member) {
	t.Helper()
	for _, m := range ms {
		mqtttest.Eventually(t, 45*time.Second, m.ready, m.cfg.Node+" ready (JetStream assets, the log followed)")
	}
}

// watchers returns how many other nodes, as node m's routes tell, hold
// every subscription of (filter, share) and how many hold any.
func watchers(t testing.TB, m member, filter, share string) (all, anyOf int) {
	t.Helper()
	subjects, err := FilterSubjects(filter)
	if err != nil {
		t.Fatal(err)
	}
	queue := ""
	if share != "" {
		queue = queueName(share, filter)
	}
	rz, err := m.srv.Routez(&server.RoutezOptions{SubscriptionsDetail: true})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]map[string]bool{} // remote node -> subjects
	for _, r := range rz.Routes {
		for _, sd := range r.SubsDetail {
			if sd.Queue == queue && slices.Contains(subjects, sd.Subject) {
				if held[r.RemoteName] == nil {
					held[r.RemoteName] = map[string]bool{}
				}
				held[r.RemoteName][sd.Subject] = true
			}
		}
	}
	for _, subs := range held {
		anyOf++
		if len(subs) == len(subjects) {
			all++
		}
	}
	return all, anyOf
}

// waitWatched waits until node m knows that want other nodes watch
// (filter, share): its publishes then reach them.
func waitWatched(t testing.TB, m member, filter, share string, want int) {
	t.Helper()
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		all, _ := watchers(t, m, filter, share)
		return all >= want
	}, fmt.Sprintf("%d other nodes watching %q (share %q) as %s sees it", want, filter, share, m.cfg.Node))
}

// waitUnwatched waits until node m knows no other node watches (filter,
// share).
func waitUnwatched(t testing.TB, m member, filter, share string) {
	t.Helper()
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		_, anyOf := watchers(t, m, filter, share)
		return anyOf == 0
	}, fmt.Sprintf("no other node watching %q as %s sees it", filter, m.cfg.Node))
}

// msg returns a QoS 0 message.
func msg(topic, payload string) *session.Message {
	m := session.NewMessage(topic, []byte(payload))
	return m
}

// certs is a CA and a certificate it signed for 127.0.0.1, usable by
// either end of a route.
func nodeTLS(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, pool *x509.CertPool) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
	}
}

// newCA returns a self-signed CA, its key and a pool holding it.
func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return ca, key, pool
}
