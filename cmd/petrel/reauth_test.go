package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestServeSIGHUPRevokesSubscriptions: a role narrowed in the
// configuration file and SIGHUP make petrel serve decide the subscriptions
// it holds again: the one no longer allowed stops delivering, and the
// revocation is logged at WARN with tenant, client, filter and reason.
func TestServeSIGHUPRevokesSubscriptions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	users := filepath.Join(dir, "users.yaml")
	hr, _ := auth.HashBcrypt([]byte("r-pass"), 4)
	hg, _ := auth.HashBcrypt([]byte("gw-pass"), 4)
	write(t, users, "users:\n  - {username: r, password: '"+hr+"', tenant: A, roles: [READER]}\n"+
		"  - {username: gw, password: '"+hg+"', tenant: A, roles: [PUB]}\n")
	cfg := filepath.Join(dir, "petrel.yaml")
	config := func(readerTopics string) string {
		return `
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
store: {type: memory}
auth:
  users_file: ` + users + `
  roles:
    - {name: READER, activity: subscribe, max_qos: 1, topics: [` + readerTopics + `]}
    - {name: PUB, activity: publish, max_qos: 1, topics: ["{tenantId}/#"]}
`
	}
	write(t, cfg, config(`"{tenantId}/read/#", "{tenantId}/secret/#"`))
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	addr := waitFor(t, logs, 1)["plain"]

	login := func(id, user, pass string) *mqtttest.Client {
		t.Helper()
		c := mqtttest.Dial(t, addr, packet.V311)
		if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true,
			Password: []byte(pass), PasswordFlag: true}); ack.ReasonCode != packet.Success {
			t.Fatalf("%s: CONNACK %v", user, ack.ReasonCode)
		}
		return c
	}
	r := login("r-1", "r", "r-pass")
	if codes := r.Subscribe(1, packet.Subscription{Filter: "A/read/#", QoS: 1}, packet.Subscription{Filter: "A/secret/#", QoS: 1}); !slices.Equal(codes, []packet.ReasonCode{1, 1}) {
		t.Fatalf("SUBACK %v", codes)
	}

	write(t, cfg, config(`"{tenantId}/read/#"`))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "subscription revoked")
	line := regexp.MustCompile(`level=WARN msg="subscription revoked" tenant=A client=r-1 filter=A/secret/# reason="not authorized" cause="policy reload"`)
	if !line.MatchString(logs.String()) {
		t.Fatalf("no WARN naming tenant, client, filter and reason:\n%s", logs.String())
	}

	gw := login("gw-1", "gw", "gw-pass")
	for i, topic := range []string{"A/secret/x", "A/read/x"} {
		gw.Send(&packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
		if _, ok := gw.Expect().(*packet.Puback); !ok {
			t.Fatalf("publish %s not acknowledged", topic)
		}
	}
	if p := r.ExpectPublish(); p.Topic != "A/read/x" {
		t.Fatalf("got %q after the reload, want only A/read/x", p.Topic)
	}
	r.ExpectNone(300 * time.Millisecond)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("petrel serve exited with %v after SIGTERM\n%s", err, logs.String())
	}
	_ = os.Remove(bin)
}
