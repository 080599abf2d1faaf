package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/packet"
)

const testSecret = "0123456789abcdef0123456789abcdef-cmd"

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "secret")
	write(t, key, testSecret+"\n")
	var out, errb bytes.Buffer
	code := run([]string{"token", "--tenant", "A", "--scope", "BUBBLE_UP_READ_CONSUMER,BUBBLE_UP_ALARM_CONSUMER", "--ttl", "10m", "--key", key, "--kid", "k1"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	svc, err := auth.New(auth.Config{JWT: auth.JWTConfig{Secret: testSecret, KID: "k1"}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := svc.Authenticate(context.Background(), &broker.ConnectInfo{ClientID: "c",
		Password: bytes.TrimSpace(out.Bytes()), HasPass: true})
	if err != nil || id.Tenant != "A" || len(id.Roles) != 2 {
		t.Fatalf("token refused: %+v %v", id, err)
	}
	for _, args := range [][]string{
		{"token", "--scope", "X", "--key", key},                         // no tenant
		{"token", "--tenant", "A"},                                      // no key
		{"token", "--tenant", "A/#", "--key", key},                      // unsafe tenant
		{"token", "--tenant", "A", "--key", key, "--alg", "RS256"},      // alg does not fit
		{"token", "--tenant", "A", "--key", filepath.Join(dir, "none")}, // missing key
	} {
		if code := run(args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

func TestPasswdCommand(t *testing.T) {
	tests := []struct {
		args  []string
		check func(string) error
	}{
		{[]string{"--cost", "4"}, func(h string) error { return auth.VerifyPassword(h, []byte("pa ss")) }},
		{[]string{"--argon2id"}, func(h string) error { return auth.VerifyPassword(h, []byte("pa ss")) }},
		{[]string{"--scram"}, func(h string) error { _, err := auth.ParseSCRAMCredentials(h); return err }},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := passwdMain(tt.args, strings.NewReader("pa ss\n"), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d %s", tt.args, code, errb.String())
		}
		if err := tt.check(strings.TrimSpace(out.String())); err != nil {
			t.Errorf("%v: %v (%q)", tt.args, err, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := passwdMain(nil, strings.NewReader("\n"), &out, &errb); code == 0 {
		t.Error("empty password accepted")
	}
	if code := passwdMain([]string{"--cost", "99"}, strings.NewReader("x\n"), &out, &errb); code == 0 {
		t.Error("bcrypt cost 99 accepted")
	}
}

var tokenEndpointRE = regexp.MustCompile(`msg="token endpoint listening" addr=(\S+)`)

// TestServeWithAuth runs petrel serve with an auth: section: JWT and
// users-file clients connect, others are refused, SIGHUP re-reads the
// users file, and the token endpoint's tokens open a connection.
func TestServeWithAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	secret := filepath.Join(dir, "secret")
	write(t, secret, testSecret+"\n")
	users := filepath.Join(dir, "users.yaml")
	h1, _ := auth.HashBcrypt([]byte("one"), 4)
	write(t, users, "users:\n  - {username: gw, password: '"+h1+"', roles: [GATEWAY_PUBLISHER]}\n")
	apiHash, _ := auth.HashBcrypt([]byte("api-secret"), 4)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
store: {type: memory}
auth:
  users_file: `+users+`
  jwt: {secret_file: `+secret+`}
  token_endpoint:
    address: 127.0.0.1:0
    key_file: `+secret+`
    clients: [{client_id: app, secret_hash: '`+apiHash+`', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}]
`)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	addr := waitFor(t, logs, 1)["plain"]

	connect := func(user string, pass []byte) packet.ReasonCode {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		p := &packet.Connect{ClientID: "c", CleanStart: true, Username: user, UsernameFlag: user != "" || pass != nil,
			Password: pass, PasswordFlag: pass != nil}
		buf, err := p.Append(nil, packet.V311)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		ack, err := packet.ReadPacket(nc, packet.V311, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ack.(*packet.Connack).ReasonCode
	}
	if rc := connect("", nil); rc != packet.NotAuthorized {
		t.Fatalf("anonymous: %v", rc)
	}
	if rc := connect("gw", []byte("one")); rc != packet.Success {
		t.Fatalf("users file: %v", rc)
	}
	if rc := connect("gw", []byte("two")); rc != packet.BadUsernameOrPassword {
		t.Fatalf("wrong password: %v", rc)
	}
	sg, _ := auth.NewSigner([]byte(testSecret), "", "")
	tok, _ := sg.Issue(auth.Claims{Tenant: "A", Roles: []string{"BUBBLE_UP_READ_CONSUMER"}, TTL: time.Hour})
	if rc := connect("", []byte(tok)); rc != packet.Success {
		t.Fatalf("jwt: %v", rc)
	}

	// SIGHUP re-reads the users file.
	h2, _ := auth.HashBcrypt([]byte("two"), 4)
	write(t, users, "users:\n  - {username: gw, password: '"+h2+"', roles: [GATEWAY_PUBLISHER]}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="configuration reloaded" audit=reload`)
	if rc := connect("gw", []byte("two")); rc != packet.Success {
		t.Fatalf("new password after SIGHUP: %v", rc)
	}

	// The token endpoint.
	var te string
	if m := tokenEndpointRE.FindStringSubmatch(logs.String()); m != nil {
		te = m[1]
	} else {
		t.Fatalf("no token endpoint:\n%s", logs.String())
	}
	resp, err := http.PostForm("http://"+te+auth.TokenPath, url.Values{"grant_type": {"client_credentials"},
		"client_id": {"app"}, "client_secret": {"api-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || body.TokenType != "Bearer" || body.ExpiresIn != 3600 {
		t.Fatalf("token endpoint: %d %+v %v", resp.StatusCode, body, err)
	}
	if rc := connect("", []byte(body.AccessToken)); rc != packet.Success {
		t.Fatalf("endpoint token: %v", rc)
	}
	if strings.Contains(logs.String(), body.AccessToken) || strings.Contains(logs.String(), tok) {
		t.Fatal("a token was logged")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("petrel serve exited with %v after SIGTERM\n%s", err, logs.String())
	}
	_ = os.Remove(bin)
}
