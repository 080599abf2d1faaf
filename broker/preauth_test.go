package broker_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap(t testing.TB) uint64 {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// connectWithPassword is a 3.1.1 CONNECT carrying a client id of id bytes
// and a password of n bytes (a JWT, say); each is at most 65535 bytes.
func connectWithPassword(id, n int) []byte {
	return rawConnect("MQTT", 4, 0xC2, 60, strings.Repeat("i", id), "user", strings.Repeat("j", n))
}

// TestConnectSizeLimit: before the connection is accepted, a packet over
// MaxConnectSize (default 64 KiB) closes it before anything is read or
// allocated for it, while a CONNECT under it, a large JWT password
// included, is accepted. After CONNECT the usual MaxPacketSize applies.
func TestConnectSizeLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		limit        int // Options.MaxConnectSize; 0: the default
		id, password int
		accepted     bool
	}{
		{"16 KiB JWT under the default", 0, 8, 16 << 10, true},
		{"60 KiB under the default", 0, 20 << 10, 40 << 10, true},
		{"70 KiB over the default", 0, 30 << 10, 40 << 10, false},
		{"over a configured 4 KiB", 4 << 10, 8, 5 << 10, false},
		{"under a configured 4 KiB", 4 << 10, 8, 3 << 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := mqtttest.StartBroker(t, broker.Options{MaxConnectSize: tc.limit})
			c := mqtttest.Dial(t, addr, packet.V311)
			c.SendRaw(connectWithPassword(tc.id, tc.password))
			if !tc.accepted {
				expectClosedSilently(t, c)
				return
			}
			if ack, ok := c.Expect().(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
				t.Fatalf("CONNACK %+v, want success", ack)
			}
			// Connected: a PUBLISH larger than MaxConnectSize is fine.
			c.Send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "big", QoS: 0}}})
			expect[*packet.Suback](t, c)
			c.Send(&packet.Publish{Topic: "big", Payload: bytes.Repeat([]byte{'x'}, 100<<10)})
			if p := c.ExpectPublish(); len(p.Payload) != 100<<10 {
				t.Fatalf("got %d payload bytes, want %d", len(p.Payload), 100<<10)
			}
		})
	}
}

// declareConnect opens n connections that each send the fixed header of
// a CONNECT declaring size bytes and then body bytes of it, and nothing
// more.
func declareConnect(t *testing.T, addr string, n, size, body int) []*mqtttest.Client {
	t.Helper()
	hdr := rawPacket(0x10, nil)[:1]
	for rem := size - 5; ; {
		b := byte(rem % 128)
		if rem /= 128; rem > 0 {
			b |= 0x80
		}
		hdr = append(hdr, b)
		if rem == 0 {
			break
		}
	}
	start := append(hdr, rawConnect("MQTT", 4, 0x02, 60, "")[2:]...) // a CONNECT's first bytes
	start = append(start, make([]byte, body)...)
	cs := make([]*mqtttest.Client, n)
	for i := range cs {
		cs[i] = mqtttest.Dial(t, addr, packet.V311)
		cs[i].SendRaw(start)
	}
	return cs
}

// TestDeclaredConnectHoldsLittle: connections that declare a 16 MiB
// CONNECT and never send it cost the broker what they sent, not what they
// declared. With the default MaxConnectSize they are closed at once; with
// a limit raised above 16 MiB they are held, each with a buffer the size
// of the bytes that came, until the connect timeout closes them, and a
// bystander pair still exchanges messages meanwhile.
func TestDeclaredConnectHoldsLittle(t *testing.T) {
	const conns, declared = 150, 16 << 20
	tests := []struct {
		name  string
		limit int
		held  bool
	}{
		{"default limit closes at once", 0, false},
		{"raised limit holds until the connect timeout", 32 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, addr := mqtttest.StartBroker(t, broker.Options{MaxConnectSize: tc.limit, ConnectTimeout: 2 * time.Second})
			before := liveHeap(t)
			accepted := b.Stats().Connections
			cs := declareConnect(t, addr, conns, declared, 4<<10)
			mqtttest.Eventually(t, 5*time.Second, func() bool { return b.Stats().Connections >= accepted+conns }, "the connections accepted")
			roundTrip(t, addr) // a bystander pair is served meanwhile
			grown := int64(liveHeap(t)) - int64(before)
			// 150 x 16 MiB = 2.4 GiB if the declared size were allocated;
			// what came is 150 x 4 KiB.
			if limit := int64(32 << 20); grown > limit {
				t.Fatalf("live heap grew by %d MiB with %d connections declaring %d MiB CONNECTs, want under %d MiB",
					grown>>20, conns, declared>>20, limit>>20)
			}
			t.Logf("live heap grew by %d KiB for %d connections", grown>>10, conns)
			if tc.held {
				// Still open before the timeout: a read finds nothing yet.
				cs[0].ExpectNone(100 * time.Millisecond)
			}
			for _, c := range cs {
				expectClosedSilently(t, c)
			}
			// Closed, they keep nothing: no buffer stays in a pool or a
			// connection.
			mqtttest.Eventually(t, 5*time.Second, func() bool {
				return int64(liveHeap(t))-int64(before) < 4<<20
			}, "the closed connections' memory released")
		})
	}
}

// TestConnectTimeoutCountsFromAccept: a client that dribbles its CONNECT
// one byte every 100 ms never gets it accepted: the connect timeout counts
// from accept, not from the last byte (3.1.1 and 5.0 section 3.1.4), and
// closes the connection long before the last byte would arrive, while a
// bystander pair is served.
func TestConnectTimeoutCountsFromAccept(t *testing.T) {
	t.Parallel()
	const timeout, every = 500 * time.Millisecond, 100 * time.Millisecond
	_, addr := mqtttest.StartBroker(t, broker.Options{ConnectTimeout: timeout})
	connect := rawConnect("MQTT", 4, 0x02, 60, "dribbler-"+strings.Repeat("d", 40)) // 5 s to send
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	closed := make(chan error, 1)
	go func() {
		var one [1]byte
		_, err := nc.Read(one[:]) // a CONNACK would arrive here; a close ends it
		closed <- err
	}()
	start := time.Now()
	sent := 0
dribble:
	for sent < len(connect) {
		if _, err := nc.Write(connect[sent : sent+1]); err != nil {
			break // closed by the broker
		}
		sent++
		select {
		case err := <-closed:
			closed <- err
			break dribble
		case <-time.After(every):
		}
	}
	roundTrip(t, addr)
	select {
	case err := <-closed:
		if err == nil {
			t.Fatalf("the broker answered a CONNECT dribbled over %v", time.Since(start))
		}
		if !errors.Is(err, io.EOF) && !isConnReset(err) {
			t.Fatalf("read: %v, want the connection closed", err)
		}
	case <-time.After(mqtttest.Timeout):
		t.Fatalf("connection still open %v after accept with %d of %d CONNECT bytes sent", time.Since(start), sent, len(connect))
	}
	if sent >= len(connect) {
		t.Fatalf("the whole CONNECT (%d bytes, one per %v) went through before the close", len(connect), every)
	}
	t.Logf("closed after %d of %d bytes, %v after the first", sent, len(connect), time.Since(start))
}

func isConnReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}
