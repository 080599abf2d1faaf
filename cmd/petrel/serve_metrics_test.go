package main

import (
	"io"
	"net/http"
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
}
