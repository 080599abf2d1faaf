package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// ctlPassword is every user's password in TestCtlAgainstServe.
const ctlPassword = "Zq9-admin-pass"

var adminRE = regexp.MustCompile(`msg="admin API listening" addr=(\S+)`)

// ctlRun runs petrel ctl in this process with environ and returns its
// exit code and output.
func ctlRun(environ []string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := ctlMain(args, environ, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCtlAgainstServe drives petrel ctl against petrel serve with
// authentication: credentials from the environment, listing, detail,
// subscriptions, publish (authorized as the principal), retained
// messages, stats, reload and kick (DISCONNECT 0x98).
func TestCtlAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := serveWithAdmin(t, []string{
		"{username: op, roles: [PETREL_ADMIN, OPS_PUB]}",
		"{username: watcher, roles: [PETREL_VIEWER]}",
		"{username: dev, tenant: t1, roles: [DEV]}",
	}, []string{
		`{name: DEV, activity: both, max_qos: 1, retain: true, topics: ["{tenantId}/#"]}`,
		`{name: OPS_PUB, activity: publish, max_qos: 1, retain: true, topics: ["+/cmd/#"]}`,
	})
	cmd, logs, mqttAddr, adminAddr := srv.cmd, srv.logs, srv.mqtt, srv.admin
	env := []string{"PETREL_ADMIN_URL=http://" + adminAddr, "PETREL_ADMIN_USER=op", "PETREL_ADMIN_PASSWORD=" + ctlPassword}

	dev := mqtttest.Dial(t, mqttAddr, packet.V5)
	if ack := dev.Connect(&packet.Connect{ClientID: "meter-1", Username: "dev", Password: []byte(ctlPassword), KeepAlive: 60}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	dev.Subscribe(1, packet.Subscription{Filter: "t1/cmd/#", QoS: 1})

	ok := func(args ...string) string {
		t.Helper()
		code, out, errs := ctlRun(env, args...)
		if code != 0 {
			t.Fatalf("petrel ctl %v: exit %d\n%s%s", args, code, out, errs)
		}
		return out
	}
	if out := ok("clients"); !regexp.MustCompile(`(?m)^t1\s+meter-1\s+yes\s+5\.0\s`).MatchString(out) {
		t.Fatalf("clients table:\n%s", out)
	}
	var clients []api.Session
	if err := json.Unmarshal([]byte(ok("clients", "--json")), &clients); err != nil || len(clients) != 1 || clients[0].Tenant != "t1" {
		t.Fatalf("clients --json: %v %+v", err, clients)
	}
	if out := ok("--tenant", "t1", "client", "meter-1"); !strings.Contains(out, "t1/cmd/#") {
		t.Fatalf("client detail:\n%s", out)
	}
	var subs []api.Subscription
	if err := json.Unmarshal([]byte(ok("subscriptions", "--topic", "t1/cmd/x", "--json")), &subs); err != nil || len(subs) != 1 {
		t.Fatalf("subscriptions: %v %+v", err, subs)
	}
	if out := ok("publish", "-t", "t1/cmd/reboot", "-m", "now", "-q", "1"); !strings.Contains(out, "queued for 1 sessions") {
		t.Fatalf("publish: %s", out)
	}
	if p := dev.ExpectPublish(); p.Topic != "t1/cmd/reboot" || string(p.Payload) != "now" {
		t.Fatalf("the device got %q %q", p.Topic, p.Payload)
	}
	// The principal's roles decide: op may publish +/cmd/# only.
	if code, _, errs := ctlRun(env, "publish", "-t", "t1/data", "-m", "x"); code != 1 || !strings.Contains(errs, "403") {
		t.Fatalf("unauthorized publish: exit %d, %s", code, errs)
	}
	ok("publish", "-t", "t1/cmd/config", "-m", "v2", "-r", "-q", "1")
	dev.ExpectPublish()
	if out := ok("retained"); !strings.Contains(out, "t1/cmd/config") {
		t.Fatalf("retained:\n%s", out)
	}
	if out := ok("retained-get", "t1/cmd/config"); out != "v2\n" {
		t.Fatalf("retained-get: %q", out)
	}
	ok("retained-delete", "t1/cmd/config")
	if code, _, errs := ctlRun(env, "retained-get", "t1/cmd/config"); code != 1 || !strings.Contains(errs, "404") {
		t.Fatalf("retained-get after delete: exit %d, %s", code, errs)
	}
	var st api.Stats
	if err := json.Unmarshal([]byte(ok("stats", "--json")), &st); err != nil || st.Clients != 1 {
		t.Fatalf("stats: %v %+v", err, st)
	}
	ok("reload")
	waitLog(t, logs, `msg="admin API: reloading configuration"`)

	viewer := []string{env[0], "PETREL_ADMIN_USER=watcher", "PETREL_ADMIN_PASSWORD=" + ctlPassword}
	if code, _, errs := ctlRun(viewer, "--tenant", "t1", "kick", "meter-1"); code != 1 || !strings.Contains(errs, "403") {
		t.Fatalf("a viewer's kick: exit %d, %s", code, errs)
	}
	wrong := []string{env[0], "PETREL_ADMIN_USER=op", "PETREL_ADMIN_PASSWORD=guess"}
	if code, _, errs := ctlRun(wrong, "clients"); code != 1 || !strings.Contains(errs, "401") {
		t.Fatalf("wrong password: exit %d, %s", code, errs)
	}
	if code, _, _ := ctlRun(env, "nonsense"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	ok("--tenant", "t1", "kick", "meter-1")
	if got := dev.ExpectClosed(); len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != packet.AdministrativeAction {
		t.Fatalf("the kicked device got %v, want DISCONNECT 0x98", got)
	}
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("petrel serve exited with %v\n%s", err, logs.String())
	}
	if _, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
		t.Fatal("the admin listener still answers after petrel serve stopped")
	}
	if strings.Contains(logs.String(), ctlPassword) {
		t.Fatal("a password reached the log")
	}
}

// TestCtlOverTLS: with admin.tls the API is HTTPS only, petrel ctl
// verifies it with --cacert, and SIGHUP reloads its certificate.
func TestCtlOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	writeCert(t, dir)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `
store: {type: memory}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
admin:
  address: "127.0.0.1:0"
  tls: {cert_file: `+filepath.Join(dir, "cert.pem")+`, key_file: `+filepath.Join(dir, "key.pem")+`, min_version: "1.3"}
`)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	waitFor(t, logs, 1)
	waitLog(t, logs, `msg="admin API listening"`)
	if !strings.Contains(logs.String(), "scheme=https") {
		t.Fatalf("admin API not on https:\n%s", logs.String())
	}
	addr := adminRE.FindStringSubmatch(logs.String())[1]
	if code, out, errs := ctlRun(nil, "--url", "https://"+addr, "--cacert", filepath.Join(dir, "cert.pem"), "stats"); code != 0 ||
		!strings.Contains(out, "clients") {
		t.Fatalf("stats over https: exit %d\n%s%s", code, out, errs)
	}
	if code, _, _ := ctlRun(nil, "--url", "https://"+addr, "stats"); code != 1 {
		t.Fatalf("an unverified certificate: exit %d, want 1", code)
	}
	if code, _, _ := ctlRun(nil, "--url", "http://"+addr, "stats"); code != 1 {
		t.Fatalf("plain http to the https listener: exit %d, want 1", code)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="admin certificate reloaded"`)
}

// TestServeAdminAddressTaken: a configured admin address that cannot be
// bound stops petrel serve; the default one, taken by another process,
// is a warning and the broker serves without the API.
func TestServeAdminAddressTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, "store: {type: memory}\nlisteners: [{name: plain, type: tcp, address: \"127.0.0.1:0\"}]\n"+
		"admin: {address: \""+taken.Addr().String()+"\"}\n")
	var errb cmdOutput
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "admin.address") {
		t.Fatalf("serve with a taken admin address: %v\n%s", err, errb.String())
	}

	// The default address: taken by this test unless something else
	// holds it already; either way the broker must come up.
	if l, err := net.Listen("tcp", "127.0.0.1:9883"); err == nil {
		defer l.Close()
	}
	write(t, cfg, "store: {type: memory}\nlisteners: [{name: plain, type: tcp, address: \"127.0.0.1:0\"}]\n")
	cmd = exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	waitFor(t, logs, 1)
	waitLog(t, logs, `msg="admin API off: its default address is taken; set admin.address"`)
}

// adminServe is a petrel serve started by serveWithAdmin.
type adminServe struct {
	cmd         *exec.Cmd
	logs        *cmdOutput
	mqtt, admin string // addresses
}

// serveWithAdmin starts petrel serve with an admin listener and an auth:
// section of roles and of users (YAML flow mappings without a password:
// every user gets ctlPassword), on ports of its own.
func serveWithAdmin(t *testing.T, users, roles []string) adminServe {
	t.Helper()
	dir, bin := buildPetrel(t)
	h, err := auth.HashBcrypt([]byte(ctlPassword), 4)
	if err != nil {
		t.Fatal(err)
	}
	usersFile := "users:\n"
	for _, u := range users {
		usersFile += "  - " + strings.Replace(u, "{", "{password: '"+h+"', ", 1) + "\n"
	}
	write(t, filepath.Join(dir, "users.yaml"), usersFile)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `
store: {type: memory}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
auth:
  default_tenant: ops
  users_file: `+filepath.Join(dir, "users.yaml")+`
  roles:
    - `+strings.Join(roles, "\n    - ")+"\n")
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	mqttAddr := waitFor(t, logs, 1)["plain"]
	waitLog(t, logs, `msg="admin API listening"`)
	return adminServe{cmd: cmd, logs: logs, mqtt: mqttAddr, admin: adminRE.FindStringSubmatch(logs.String())[1]}
}
