package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestCheckReportsEveryProblemAtOnce: a key that is not the
// certificate's, a duplicate key, a missing users file and an undefined
// role name are all refused by one petrel check, with a non-zero exit;
// serve refuses the same file.
func TestCheckReportsEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "other.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `log: {level: info}
listeners:
  - {name: s, type: tls, address: "127.0.0.1:0", tls: {cert_file: cert.pem, key_file: other.key}}
store: {type: memory}
store: {type: disk}
auth:
  users_file: users-missing.yaml
  anonymous: {enabled: true, roles: [BUBBLE_UP_READ_CONSUMR]}
`)
	var out, errb bytes.Buffer
	code := run([]string{"check", "--config", cfg}, &out, &errb)
	if code == 0 {
		t.Fatalf("check passed: %s", out.String())
	}
	for _, want := range []string{
		"store: duplicate key (line 5; first on line 4)",
		"listeners[0].tls: cert_file " + filepath.Join(dir, "cert.pem") + ", key_file " + filepath.Join(dir, "other.key"),
		"private key does not match public key",
		filepath.Join(dir, "users-missing.yaml") + ": no such file",
		`anonymous: role "BUBBLE_UP_READ_CONSUMR" is not defined`,
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}
	if code := run([]string{"serve", "--config", cfg}, &out, &errb); code == 0 {
		t.Fatal("serve accepted what check refuses")
	}
}

// TestCheckNamesTheFileOfPetrelConfig: PETREL_CONFIG=f petrel check
// checks f and says so.
func TestCheckNamesTheFileOfPetrelConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	write(t, good, "listeners: [{type: tcp, address: '127.0.0.1:1883'}, {type: tcp, address: '127.0.0.1:1884'}]\n")
	var out, errb bytes.Buffer
	if code := checkMain(nil, []string{"PETREL_CONFIG=" + good}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if got := out.String(); got != good+": ok (2 listeners)\n" {
		t.Fatalf("output %q, want the file named", got)
	}
}

// TestCheckResolvesPathsAgainstTheFile: relative certificate paths are the
// configuration file's folder's, not the working directory's (the test
// runs in the package's folder).
func TestCheckResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, "listeners: [{type: tls, address: '127.0.0.1:8883', tls: {cert_file: cert.pem, key_file: key.pem}}]\n")
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// auditLines reads the audit file's JSON objects, failing on any line
// that is not one.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func hasEvent(lines []map[string]any, event string, attrs map[string]string) bool {
	for _, l := range lines {
		if l["audit"] != event {
			continue
		}
		ok := true
		for k, v := range attrs {
			ok = ok && l[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

// TestServeRelativePathsAuditAndReload: petrel serve started from another
// folder opens the store, users file and audit file beside its
// configuration file (logged absolute); the audit file gets JSON lines for
// a connect, a wrong password, a refused subscription and a reload; a
// refused reload changes nothing, not even the users; SIGHUP reopens a
// rotated audit file.
func TestServeRelativePathsAuditAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	elsewhere := t.TempDir()
	h1, _ := auth.HashBcrypt([]byte("one"), 4)
	h2, _ := auth.HashBcrypt([]byte("two"), 4)
	users := filepath.Join(dir, "users.yaml")
	write(t, users, "users:\n  - {username: reader, password: '"+h1+"', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}\n")
	cfg := filepath.Join(dir, "petrel.yaml")
	good := `log: {level: info, audit_file: audit.log}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
store: {data_dir: data}
auth: {users_file: users.yaml}
`
	write(t, cfg, good)
	cmd := exec.Command(bin, "serve", "--config", "../"+filepath.Base(dir)+"/petrel.yaml")
	cmd.Dir = elsewhere
	// The config's path is relative to elsewhere: both temp dirs share a parent.
	if filepath.Dir(dir) != filepath.Dir(elsewhere) {
		t.Skip("temporary folders without a common parent")
	}
	logs := startServe(t, cmd)
	addr := waitFor(t, logs, 1)["plain"]
	waitLog(t, logs, `msg="store opened" data_dir=`+filepath.Join(dir, "data"))
	if _, err := os.Stat(filepath.Join(elsewhere, "data")); err == nil {
		t.Fatal("a store was opened in the working directory")
	}

	connect := func(pass string) (net.Conn, packet.ReasonCode) {
		t.Helper()
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		buf, _ := (&packet.Connect{ClientID: "r1", CleanStart: true, Username: "reader", UsernameFlag: true,
			Password: []byte(pass), PasswordFlag: true}).Append(nil, packet.V311)
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := packet.ReadPacket(nc, packet.V311, 0)
		if err != nil {
			t.Fatal(err)
		}
		return nc, p.(*packet.Connack).ReasonCode
	}
	if _, rc := connect(wrongPassword); rc != packet.BadUsernameOrPassword {
		t.Fatalf("wrong password: %v", rc)
	}
	nc, rc := connect("one")
	if rc != packet.Success {
		t.Fatalf("right password: %v", rc)
	}
	buf, _ := (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "B/read/#", QoS: 1}}}).Append(nil, packet.V311)
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	if p, err := packet.ReadPacket(nc, packet.V311, 0); err != nil || p.(*packet.Suback).ReasonCodes[0] != 0x80 {
		t.Fatalf("subscription to another tenant: %v %v, want SUBACK 0x80 [MQTT-3.9.3-2]", p, err)
	}

	// A bad file and a new password: the reload is refused, and the users
	// file is not re-read either.
	write(t, users, "users:\n  - {username: reader, password: '"+h2+"', tenant: A, roles: [BUBBLE_UP_READ_CONSUMER]}\n")
	write(t, cfg, good+"limits: {max_conections: 1}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="reload refused; keeping the running configuration, users, roles and keys" audit=reload.refused`)
	if _, rc := connect("one"); rc != packet.Success {
		t.Fatalf("old password after a refused reload: %v", rc)
	}
	if strings.Contains(logs.String(), `msg="configuration reloaded"`) {
		t.Fatalf("a refused reload also reported a reload:\n%s", logs.String())
	}

	// Rotate the audit file; a good reload reopens it, applies the new
	// users and shows the limit's old and new values.
	audit := filepath.Join(dir, "audit.log")
	if err := os.Rename(audit, audit+".1"); err != nil {
		t.Fatal(err)
	}
	write(t, cfg, good+"limits: {max_connections: 100}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="limit changed" key=limits.max_connections from=0 to=100`)
	waitLog(t, logs, `msg="configuration reloaded" audit=reload`)
	if _, rc := connect("two"); rc != packet.Success {
		t.Fatalf("new password after the reload: %v", rc)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit %v\n%s", err, logs.String())
	}
	old, cur := auditLines(t, audit+".1"), auditLines(t, audit)
	for _, want := range []struct {
		event string
		attrs map[string]string
	}{
		{"auth.failure", map[string]string{"username": "reader", "method": "password"}},
		{"connect", map[string]string{"tenant": "A", "principal": "reader", "method": "password"}},
		{"subscribe.refused", map[string]string{"tenant": "A", "filter": "B/read/#"}},
		{"reload.refused", nil},
	} {
		if !hasEvent(old, want.event, want.attrs) {
			t.Errorf("rotated audit file lacks %s %v:\n%v", want.event, want.attrs, old)
		}
	}
	if !hasEvent(cur, "reload", nil) || !hasEvent(cur, "connect", map[string]string{"principal": "reader"}) {
		t.Errorf("reopened audit file lacks the reload and the connect after it: %v", cur)
	}
	for _, f := range []string{audit, audit + ".1"} {
		data, err := os.ReadFile(f)
		if err != nil || bytes.Contains(data, []byte(wrongPassword)) || strings.Contains(logs.String(), wrongPassword) {
			t.Fatalf("the password is in the audit file or the log (%v)", err)
		}
	}
}

// wrongPassword is a password no user has, looked for in the logs.
const wrongPassword = "Wr0ng-Secret-77"
