package auth

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// scramClient is an independent client side of RFC 5802 / RFC 7677.
type scramClient struct {
	user, pass  string
	cnonce      string
	first, auth string
	salted      []byte
}

func (c *scramClient) clientFirst() []byte {
	c.first = "n=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user) + ",r=" + c.cnonce
	return []byte("n,," + c.first)
}

func (c *scramClient) clientFinal(t *testing.T, serverFirst []byte) []byte {
	t.Helper()
	var nonce, salt string
	var iter int
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			iter, _ = strconv.Atoi(a[2:])
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) <= len(c.cnonce) {
		t.Fatalf("server nonce %q does not extend %q", nonce, c.cnonce)
	}
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || iter < 4096 {
		t.Fatalf("server-first %q", serverFirst)
	}
	c.salted, _ = pbkdf2.Key(sha256.New, c.pass, s, iter, 32)
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(c.salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte("n,,")) + ",r=" + nonce
	c.auth = c.first + "," + string(serverFirst) + "," + withoutProof
	sig := mac(stored[:], c.auth)
	proof := make([]byte, 32)
	subtle.XORBytes(proof, clientKey, sig)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))
}

func (c *scramClient) checkServerFinal(serverFinal []byte) bool {
	h := hmac.New(sha256.New, c.salted)
	h.Write([]byte("Server Key"))
	sk := h.Sum(nil)
	h = hmac.New(sha256.New, sk)
	h.Write([]byte(c.auth))
	return string(serverFinal) == "v="+base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestSCRAM(t *testing.T) {
	cr, err := NewSCRAMCredentials([]byte("s3cret"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseSCRAMCredentials(cr.String()); err != nil || back.String() != cr.String() {
		t.Fatalf("round trip: %v", err)
	}
	uf := writeUsers(t,
		fmt.Sprintf("  - {username: 'app,1', scram_sha256: '%s', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}\n", cr),
		fmt.Sprintf("  - {username: bad, scram_sha256: '%s', tenant: 'A', roles: [BUBBLE_UP_READ_CONSUMER]}\n", cr),
	)
	s := newService(t, Config{UsersFile: uf})
	ci := &broker.ConnectInfo{ClientID: "c1", Version: packet.V5}
	if _, err := s.StartAuth(context.Background(), ci, "PLAIN"); !errors.Is(err, packet.BadAuthenticationMethod) {
		t.Fatalf("unknown method: %v", err)
	}
	run := func(user, pass string) (*broker.Identity, bool, error) {
		x, err := s.StartAuth(context.Background(), ci, SCRAMMethod)
		if err != nil {
			t.Fatal(err)
		}
		c := &scramClient{user: user, pass: pass, cnonce: "fyko+d2lbbFgONRv9qkxdawL"}
		sf, id, err := x.Step(context.Background(), c.clientFirst())
		if err != nil || id != nil {
			return nil, false, err
		}
		fin, id, err := x.Step(context.Background(), c.clientFinal(t, sf))
		if err != nil {
			return nil, false, err
		}
		return id, c.checkServerFinal(fin), nil
	}
	id, serverOK, err := run("app,1", "s3cret")
	if err != nil || id == nil || !serverOK {
		t.Fatalf("exchange: %+v server verified %v: %v", id, serverOK, err)
	}
	if id.Tenant != "A" || id.Username != "app,1" || id.Attrs[AttrMethod] != "scram" {
		t.Fatalf("identity %+v", id)
	}
	if !s.CanSubscribe(id, "A/read/#", 1).OK {
		t.Fatal("SCRAM identity has no grants")
	}
	if _, _, err := run("app,1", "wrong"); !errors.Is(err, packet.BadUsernameOrPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := run("nobody", "s3cret"); !errors.Is(err, packet.BadUsernameOrPassword) {
		t.Fatalf("unknown user: %v", err)
	}

	// Malformed messages end the exchange with not authorized.
	for _, first := range []string{"p=tls-unique,,n=a,r=x", "n,a=admin,n=a,r=x", "n,,r=x", "n,,n=a", "n,,n=a=ZZ,r=x", ""} {
		x, _ := s.StartAuth(context.Background(), ci, SCRAMMethod)
		if _, _, err := x.Step(context.Background(), []byte(first)); !errors.Is(err, packet.NotAuthorized) {
			t.Errorf("client-first %q: %v", first, err)
		}
	}
	x, _ := s.StartAuth(context.Background(), ci, SCRAMMethod)
	c := &scramClient{user: "app,1", pass: "s3cret", cnonce: "abc"}
	sf, _, _ := x.Step(context.Background(), c.clientFirst())
	final := string(c.clientFinal(t, sf))
	tampered := strings.Replace(final, ",r=abc", ",r=abd", 1)
	if _, _, err := x.Step(context.Background(), []byte(tampered)); !errors.Is(err, packet.NotAuthorized) {
		t.Errorf("nonce mismatch: %v", err)
	}
}
