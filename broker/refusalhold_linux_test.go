package broker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// holdingAuth refuses the username "guess" with a held refusal of delay
// (as internal/auth does for a throttled name) and accepts anyone else.
type holdingAuth struct{ delay time.Duration }

func (a holdingAuth) Authenticate(_ context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	if ci.Username == "guess" {
		return nil, &broker.HeldRefusal{Code: packet.ConnectionRateExceeded, Delay: a.delay}
	}
	return &broker.Identity{Tenant: "t"}, nil
}

func (holdingAuth) AuthenticatesQuickly() bool { return true }

// TestHeldRefusalNoWriter: a held refusal's CONNACK comes after its
// delay, written by the held refusals' timer (no writer job), its code
// mapped for 3.1.1 (3), then
// the close [MQTT-3.2.2-6]. A 5.0 client whose Maximum Packet Size is
// below the CONNACK is not sent it [MQTT-3.2.2-19] and is not held.
func TestHeldRefusalNoWriter(t *testing.T) {
	const conns, delay = 8, 150 * time.Millisecond
	b, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: holdingAuth{delay}, Logger: slog.New(slog.DiscardHandler)})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		var cs []*mqtttest.Client
		sent := time.Now()
		for range conns {
			c := mqtttest.Dial(t, addr, v)
			c.Send(&packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: "g", CleanStart: true,
				UsernameFlag: true, Username: "guess", PasswordFlag: true, Password: []byte("x")})
			cs = append(cs, c)
		}
		want := packet.ConnectionRateExceeded
		if v != packet.V5 {
			want = packet.ServerUnavailable
		}
		for _, c := range cs {
			ack, ok := c.Expect().(*packet.Connack)
			if !ok || ack.ReasonCode != want {
				t.Fatalf("%v: got %+v, want CONNACK %v", v, ack, want)
			}
			c.ExpectClosed()
		}
		if el := time.Since(sent); el < delay { // a timer never fires early
			t.Fatalf("%v: held refusals answered after %v, before the %v delay", v, el, delay)
		}
	}
	if h := b.Stats().Held; h.Holds != 2*conns || h.Held != 0 {
		t.Fatalf("held refusals %+v, want %d held and answered", h, 2*conns)
	}
	if writers, _ := b.GoroutineJobs(); writers != 0 {
		t.Fatalf("%d writer jobs for held refusals, want 0", writers)
	}

	// Maximum Packet Size 4: the 5-byte CONNACK is not sent [MQTT-3.2.2-19].
	c := mqtttest.Dial(t, addr, packet.V5)
	p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "g", CleanStart: true,
		UsernameFlag: true, Username: "guess", PasswordFlag: true, Password: []byte("x")}
	p.Properties.MaximumPacketSize = 4
	p.Properties.Set(packet.PropMaximumPacketSize)
	c.Send(p)
	if got := c.ExpectClosed(); len(got) != 0 {
		t.Fatalf("got %v, want the connection closed without a CONNACK", got)
	}
	if h := b.Stats().Held; h.Holds != 2*conns {
		t.Fatalf("a refusal whose CONNACK the client refuses was held: %+v", h)
	}
	// Anyone else connects at once.
	if _, ack := mqtttest.Connect(t, addr, packet.V5, "ok", true); ack.ReasonCode != packet.Success {
		t.Fatalf("honest client: %v", ack.ReasonCode)
	}
}
