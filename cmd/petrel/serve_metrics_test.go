package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestServeMetricsEndpoint: petrel serve mounts the Prometheus metrics on
// its admin listener, behind the admin's authentication, with the
// broker's figures and the password checks' counters.
func TestServeMetricsEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := serveWithAdmin(t, []string{
		"{username: op, roles: [PETREL_VIEWER]}",
		"{username: dev, tenant: t1, roles: [DEV]}",
	}, []string{`{name: DEV, activity: both, max_qos: 1, topics: ["{tenantId}/#"]}`})
	mqttAddr, adminAddr := srv.mqtt, srv.admin

	dev := mqtttest.Dial(t, mqttAddr, packet.V5)
	if ack := dev.Connect(&packet.Connect{ClientID: "meter-1", Username: "dev", Password: []byte(ctlPassword), KeepAlive: 60}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}

	scrape := func(user string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, ctlPassword)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without credentials: HTTP %d, want 401", code)
	}
	// The figures are a snapshot reused for up to a second (the $SYS
	// publisher may have just taken one): scrape until dev shows.
	var body string
	connected := regexp.MustCompile(`(?m)^petrel_connections\{listener="plain",version="5\.0"\} 1$`)
	for deadline := time.Now().Add(5 * time.Second); ; {
		var code int
		code, body = scrape("op")
		if code != http.StatusOK {
			t.Fatalf("/metrics: HTTP %d\n%s", code, body)
		}
		if connected.MatchString(body) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	value := func(re string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in /metrics:\n%s", re, body)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if v := value(`petrel_connections\{listener="plain",version="5\.0"\}`); v != 1 {
		t.Errorf("petrel_connections = %v, want 1", v)
	}
	// dev's CONNECT and op's two scrapes' credentials were checked.
	if v := value(`petrel_password_checks_total`); v < 2 {
		t.Errorf("petrel_password_checks_total = %v, want at least 2", v)
	}
	value(`petrel_password_checks_refused_total\{reason="busy"\}`)
	value(`go_goroutines`)
	// No cluster: section, no cluster series.
	if m := regexp.MustCompile(`(?m)^petrel_cluster_\w+`).FindString(body); m != "" {
		t.Errorf("%s exported without a cluster: section", m)
	}
}

// TestServeClusterMetrics: petrel serve with a one-node cluster: section
// exports the node's figures at /metrics: ready, meta leader, leading both
// assets, no routes, and the retained change a client published counted
// as replicated.
func TestServeClusterMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, fmt.Sprintf(`
store: {data_dir: %s}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
cluster: {node: solo, listen: "127.0.0.1:%d"}
`, filepath.Join(dir, "data"), freePorts(t, 1)[0]))
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	mqttAddr := waitFor(t, logs, 1)["plain"]
	waitLog(t, logs, `msg="admin API listening"`)
	adminAddr := adminRE.FindStringSubmatch(logs.String())[1]

	// Without an auth: section the admin API is open on loopback.
	var body string
	series := func(re string) (float64, bool) {
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(m[1], 64)
		return v, err == nil
	}
	scrapeUntil := func(re string, want float64) {
		t.Helper()
		mqtttest.Eventually(t, 20*time.Second, func() bool {
			resp, err := http.Get("http://" + adminAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/metrics: HTTP %d\n%s", resp.StatusCode, b)
			}
			body = string(b)
			v, ok := series(re)
			return ok && v == want
		}, re)
	}
	scrapeUntil(`petrel_cluster_ready`, 1)

	c := mqtttest.Dial(t, mqttAddr, packet.V311)
	if ack := c.Connect(&packet.Connect{ClientID: "meter-1", CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packet.Success {
		t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	c.Send(&packet.Publish{Topic: "site/1/state", Retain: true, Payload: []byte("on")})
	scrapeUntil(`petrel_cluster_retained_total`, 1)
	for re, want := range map[string]float64{
		`petrel_cluster_meta_leader`:                                1,
		`petrel_cluster_routes`:                                     0,
		`petrel_cluster_asset_leader\{asset="PETREL_RETAINED"\}`:    1,
		`petrel_cluster_asset_leader\{asset="KV_PETREL_OWNERS"\}`:   1,
		`petrel_cluster_retain_failed_total`:                        0,
		`petrel_cluster_inbox_dropped_total`:                        0,
		`petrel_cluster_forward_failed_total\{reason="too_large"\}`: 0,
	} {
		if v, ok := series(re); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", re, v, ok, want)
		}
	}
}

// getMetrics scrapes the admin listener's /metrics as user (none: no
// credentials) and returns the status and the page.
func getMetrics(t *testing.T, adminAddr, user string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	if user != "" {
		req.SetBasicAuth(user, ctlPassword)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricValue returns the value of the series line matching re (the name
// and its labels) in a /metrics page, and whether there is one.
func metricValue(body, re string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}
