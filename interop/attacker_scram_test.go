package interop_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// The attacker's SCRAM-SHA-256 client (RFC 5802, RFC 7677), independent
// of internal/auth's server side, for 5.0 enhanced authentication and
// re-authentication [MQTT-4.12].

// scram is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677).
type scram struct {
	user, pass  string
	cnonce      string
	first, auth string
	salted      []byte
}

func (c *scram) clientFirst() []byte {
	c.first = "n=" + c.user + ",r=" + c.cnonce
	return []byte("n,," + c.first)
}

func (c *scram) clientFinal(t *testing.T, serverFirst []byte) []byte {
	t.Helper()
	var nonce, salt string
	iter := 0
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			iter, _ = strconv.Atoi(a[2:]) // checked below
		}
	}
	s, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || iter < 4096 || !strings.HasPrefix(nonce, c.cnonce) {
		t.Fatalf("server-first %q", serverFirst)
	}
	c.salted, err = pbkdf2.Key(sha256.New, c.pass, s, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	clientKey := mac(c.salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte("n,,")) + ",r=" + nonce
	c.auth = c.first + "," + string(serverFirst) + "," + withoutProof
	proof := make([]byte, 32)
	subtle.XORBytes(proof, clientKey, mac(stored[:], c.auth))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))
}

func scramProps(p *packet.Properties, data []byte) {
	p.AuthenticationMethod = auth.SCRAMMethod
	p.Set(packet.PropAuthenticationMethod)
	p.AuthenticationData = data
	p.Set(packet.PropAuthenticationData)
}

// scramConnect connects (5.0) as users-file principal who by SCRAM.
func (w *world) scramConnect(who, id string, s sess) *peer {
	w.t.Helper()
	pr := principals[who]
	c := mqtttest.Dial(w.t, w.addr, packet.V5)
	sc := &scram{user: pr.user, pass: "pw-" + pr.user, cnonce: "c-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	con := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: id, CleanStart: s.clean, KeepAlive: 60}
	if s.expiry > 0 {
		con.Properties.SessionExpiryInterval = s.expiry
		con.Properties.Set(packet.PropSessionExpiryInterval)
	}
	scramProps(&con.Properties, sc.clientFirst())
	p := &peer{Client: c, w: w, who: who, id: id}
	if ack, ok := p.scramRound(con, sc).(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
		w.t.Fatalf("SCRAM CONNECT as %s: %+v", who, ack)
	}
	return p
}

// scramRound runs an exchange that first starts; it returns the packet
// that ends it.
func (p *peer) scramRound(first packet.Packet, sc *scram) packet.Packet {
	p.w.t.Helper()
	p.Send(first)
	cont, ok := p.Expect().(*packet.Auth)
	if !ok || cont.ReasonCode != packet.ContinueAuthentication {
		p.w.t.Fatalf("want AUTH 0x18 with server-first, got %+v", cont)
	}
	a := &packet.Auth{ReasonCode: packet.ContinueAuthentication}
	scramProps(&a.Properties, sc.clientFinal(p.w.t, cont.Properties.AuthenticationData))
	p.Send(a)
	for {
		pk := p.Expect()
		switch m := pk.(type) {
		case *packet.Publish: // in flight before the re-authentication ended
			p.ack(m)
			continue
		case *packet.Pubrel:
			p.Send(&packet.Pubcomp{PacketID: m.PacketID})
			continue
		}
		return pk
	}
}

// reauth re-authenticates (5.0 AUTH 0x19) as users-file principal who and
// returns the packet that ends the exchange.
func (p *peer) reauth(who string) packet.Packet {
	p.w.t.Helper()
	pr := principals[who]
	sc := &scram{user: pr.user, pass: "pw-" + pr.user, cnonce: "r-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	re := &packet.Auth{ReasonCode: packet.ReAuthenticate}
	scramProps(&re.Properties, sc.clientFirst())
	return p.scramRound(re, sc)
}
