package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestCrashLosesNothingAcknowledged publishes QoS 1 and QoS 2 streams to
// persistent subscribers while petrel serve (disk store, sync always) is
// killed with SIGKILL at random moments and restarted; then every message
// the publisher got PUBACK or PUBCOMP for must reach the subscribers, in
// order, QoS 2 exactly once (DESIGN.md section 3: a PUBACK means it is on
// disk). One message at a time, to subscribers offline throughout;
// TestCrashQoS2FullRateExactlyOnce covers QoS 2 at full rate with a
// subscriber coming and going.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it several times")
	}
	dir, bin := buildPetrel(t)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, "log: {level: warn}\nstore: {data_dir: "+filepath.Join(dir, "data")+"}\nlisteners: [{type: tcp, address: '127.0.0.1:0'}]\n")

	start := func() (*exec.Cmd, string) {
		t.Helper()
		cmd := exec.Command(bin, "serve", "--config", cfg, "--log-level", "info")
		logs := startServe(t, cmd)
		return cmd, waitFor(t, logs, 1)["tcp-0"]
	}
	connect := func(addr, id string, clean bool) *mqtttest.Client {
		t.Helper()
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := mqtttest.NewClient(t, nc, packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60}); ack.ReasonCode != packet.Success {
			t.Fatalf("CONNACK %v", ack.ReasonCode)
		}
		return c
	}

	// Two persistent subscribers, then offline.
	cmd, addr := start()
	for i, q := range []byte{1, 2} {
		s := connect(addr, fmt.Sprintf("crash-sub-%d", q), false)
		s.Subscribe(uint16(i+1), packet.Subscription{Filter: fmt.Sprintf("crash/q%d", q), QoS: q})
		s.Send(&packet.Disconnect{})
		s.ExpectClosed()
	}

	acked := map[byte][]int{} // per QoS, the sequence numbers acknowledged
	next := map[byte]int{1: 0, 2: 0}
	for round := range 3 {
		if round > 0 {
			cmd, addr = start()
		}
		pub := connect(addr, "crash-pub", true)
		// SIGKILL at a random moment, mid-exchange as likely as not.
		proc := cmd.Process
		killer := time.AfterFunc(time.Duration(150+rand.IntN(400))*time.Millisecond, func() {
			_ = proc.Signal(syscall.SIGKILL) // it may have died already
		})
		pid := uint16(0)
	publishing:
		for {
			for _, q := range []byte{1, 2} {
				pid = pid%65535 + 1
				seq := next[q]
				next[q]++
				buf, _ := (&packet.Publish{Topic: fmt.Sprintf("crash/q%d", q), QoS: q, PacketID: pid, Payload: []byte(strconv.Itoa(seq))}).Append(nil, packet.V311)
				if _, err := pub.Conn.Write(buf); err != nil || !completes(pub, q, pid) {
					break publishing // the broker died under us
				}
				acked[q] = append(acked[q], seq)
			}
		}
		killer.Stop()
		_ = cmd.Wait() // killed: the error says so
	}
	if len(acked[1]) == 0 || len(acked[2]) == 0 {
		t.Fatal("nothing was acknowledged; the test tested nothing")
	}

	_, addr = start()
	for _, q := range []byte{1, 2} {
		sub := connect(addr, fmt.Sprintf("crash-sub-%d", q), false)
		var got []int
		seen := map[int]int{}
		for {
			p, err := sub.Read(2 * time.Second)
			if err != nil {
				break
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				if rel, ok := p.(*packet.Pubrel); ok {
					sub.Send(&packet.Pubcomp{PacketID: rel.PacketID})
				}
				continue
			}
			n, err := strconv.Atoi(string(pub.Payload))
			if err != nil {
				t.Fatalf("payload %q", pub.Payload)
			}
			got = append(got, n)
			seen[n]++
			if q == 1 {
				sub.Send(&packet.Puback{PacketID: pub.PacketID})
			} else {
				sub.Send(&packet.Pubrec{PacketID: pub.PacketID})
			}
		}
		for _, n := range acked[q] {
			if seen[n] == 0 {
				t.Fatalf("QoS %d: acknowledged message %d lost (acked %d, received %d)", q, n, len(acked[q]), len(got))
			}
			if q == 2 && seen[n] > 1 {
				t.Fatalf("QoS 2: message %d delivered %d times", n, seen[n])
			}
		}
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] && !(q == 1 && seen[got[i]] > 1) {
				t.Fatalf("QoS %d: out of order: %d after %d", q, got[i], got[i-1])
			}
		}
		t.Logf("QoS %d: %d acknowledged, %d received (%d published)", q, len(acked[q]), len(got), next[q])
	}
}

// completes runs the publisher's side of the QoS q exchange for pid and
// reports whether it completed (PUBACK, or PUBREC then PUBCOMP).
func completes(c *mqtttest.Client, q byte, pid uint16) bool {
	p, err := c.Read(5 * time.Second)
	if err != nil {
		return false
	}
	if q == 1 {
		a, ok := p.(*packet.Puback)
		return ok && a.PacketID == pid
	}
	if r, ok := p.(*packet.Pubrec); !ok || r.PacketID != pid {
		return false
	}
	buf, _ := (&packet.Pubrel{PacketID: pid}).Append(nil, packet.V311)
	if _, err := c.Conn.Write(buf); err != nil {
		return false
	}
	p, err = c.Read(5 * time.Second)
	if err != nil {
		return false
	}
	a, ok := p.(*packet.Pubcomp)
	return ok && a.PacketID == pid
}
