package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/auth"
	"github.com/petrel-mqtt/petrel/internal/clustertest"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// clusterNode is one petrel serve of a three-node cluster on loopback.
// It can be killed, stopped and started again with the same configuration
// (and so the same data directories and route port); its listeners take
// new ephemeral ports at each start.
type clusterNode struct {
	name        string
	bin, cfg    string
	cmd         *exec.Cmd
	logs        *cmdOutput
	history     []*cmdOutput // every start's log, in order
	mqtt, admin string       // the running (or last) process's addresses
	starts      int
	up          atomic.Value // string: mqtt while the node runs and accepts CONNECTs, "" otherwise
}

// freePorts returns n TCP ports free on 127.0.0.1 a moment ago (the route
// ports every node's peers list must name before the nodes start), in
// this package's range (mqtttest.FreePorts).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	return mqtttest.FreePorts(t, n, mqtttest.CmdPorts)
}

// startCluster3 starts three petrel serve processes joined by a cluster:
// section (routes on free loopback ports, a disk store each), with users
// op (tenant ops, operator admin), u1 (tenant t1) and u2 (tenant t2), all
// allowed every topic, and waits until each node accepts a CONNECT (the
// cluster has formed: claims need its replicated assets).
func startCluster3(t *testing.T) []*clusterNode {
	t.Helper()
	nodes, _ := startCluster3Routed(t, false)
	return nodes
}

// startCluster3Split is startCluster3 with every route through a proxy of
// the test (each node advertises its proxy, cluster.advertise), which can
// split the nodes (clustertest).
func startCluster3Split(t *testing.T) ([]*clusterNode, *clustertest.Partition) {
	t.Helper()
	return startCluster3Routed(t, true)
}

func startCluster3Routed(t *testing.T, split bool) ([]*clusterNode, *clustertest.Partition) {
	t.Helper()
	dir, bin := buildPetrel(t)
	h, err := auth.HashBcrypt([]byte(ctlPassword), 4)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "users.yaml"), fmt.Sprintf(`users:
  - {username: op, password: '%[1]s', roles: [PETREL_ADMIN, ALL]}
  - {username: u1, password: '%[1]s', tenant: t1, roles: [ALL]}
  - {username: u2, password: '%[1]s', tenant: t2, roles: [ALL]}
`, h))
	ports := freePorts(t, 3)
	names := []string{"n1", "n2", "n3"}
	advertise := make([]string, 3) // what each node's peers dial
	listen := make([]string, 3)
	for i, p := range ports {
		listen[i] = fmt.Sprintf("127.0.0.1:%d", p)
		advertise[i] = listen[i]
	}
	var part *clustertest.Partition
	if split {
		advertise, part = clustertest.New(t, names, listen, freePorts(t, 3))
	}
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		name := names[i]
		var peers []string
		for _, a := range advertise {
			peers = append(peers, "nats://"+a)
		}
		cfg := filepath.Join(dir, name+".yaml")
		write(t, cfg, fmt.Sprintf(`
log: {level: info}
store: {data_dir: %s}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
auth:
  default_tenant: ops
  users_file: %s
  roles:
    - {name: ALL, activity: both, max_qos: 2, retain: true, topics: ["#"]}
cluster:
  node: %s
  listen: %s
  advertise: %s
  peers: [%s]
  will_after: 5s
`, filepath.Join(dir, name, "data"), filepath.Join(dir, "users.yaml"), name, listen[i], advertise[i], strings.Join(peers, ", ")))
		nodes[i] = &clusterNode{name: name, bin: bin, cfg: cfg}
		nodes[i].up.Store("")
		nodes[i].launch(t)
	}
	for _, n := range nodes {
		// The listeners start once the node has joined (a few seconds
		// while the others start too).
		n.waitListening(t)
	}
	for _, n := range nodes {
		n.waitAccepting(t)
	}
	return nodes, part
}

// launch starts the node's process; its log is shown if the test fails.
func (n *clusterNode) launch(t *testing.T) {
	t.Helper()
	n.starts++
	n.cmd = exec.Command(n.bin, "serve", "--config", n.cfg)
	logs := startServe(t, n.cmd)
	n.logs = logs
	n.history = append(n.history, logs)
	name, start := n.name, n.starts
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log (start %d):\n%s", name, start, lastLines(logs.String(), 300))
		}
	})
}

// waitListening waits for the process's MQTT and admin listeners.
func (n *clusterNode) waitListening(t *testing.T) {
	t.Helper()
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		m := listenRE.FindStringSubmatch(n.logs.String())
		a := adminRE.FindStringSubmatch(n.logs.String())
		if m == nil || a == nil {
			return false
		}
		n.mqtt, n.admin = m[2], a[1]
		return true
	}, n.name+" listening")
}

// waitAccepting waits until the node accepts a CONNECT (its replicated
// assets are there), then marks it up.
func (n *clusterNode) waitAccepting(t *testing.T) {
	t.Helper()
	mqtttest.Eventually(t, 45*time.Second, func() bool {
		c := mqtttest.Dial(t, n.mqtt, packet.V5)
		defer c.Conn.Close()
		return c.Connect(&packet.Connect{ClientID: "probe-" + n.name, CleanStart: true, KeepAlive: 30,
			UsernameFlag: true, Username: "op", PasswordFlag: true, Password: []byte(ctlPassword)}).ReasonCode == packet.Success
	}, n.name+" accepts CONNECTs (cluster formed)")
	n.up.Store(n.mqtt)
}

// addr is the node's MQTT address while it is up, "" otherwise; safe to
// call from any goroutine.
func (n *clusterNode) addr() string { return n.up.Load().(string) }

// kill ends the node's process with SIGKILL, by its PID.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	n.up.Store("")
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (pid %d): %v", n.name, n.cmd.Process.Pid, err)
	}
	_ = n.cmd.Wait() // killed: the error says so
}

// stop ends the node's process with SIGTERM and waits for it to exit.
func (n *clusterNode) stop(t *testing.T) {
	t.Helper()
	n.up.Store("")
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s (pid %d): %v", n.name, n.cmd.Process.Pid, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- n.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("%s exited after SIGTERM with %v", n.name, err)
		}
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Signal(syscall.SIGKILL) // the test fails anyway
		<-exited
		t.Fatalf("%s did not exit within 30 s of SIGTERM", n.name)
	}
}

// restart starts the node again with the same configuration and waits
// until it accepts CONNECTs.
func (n *clusterNode) restart(t *testing.T) {
	t.Helper()
	n.launch(t)
	n.waitListening(t)
	n.waitAccepting(t)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[%d lines before]\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "")
}

// join connects client id as user (u1, u2 or op) with protocol v.
func join(t *testing.T, n *clusterNode, v packet.Version, user, id string, clean bool) *mqtttest.Client {
	t.Helper()
	c := mqtttest.Dial(t, n.mqtt, v)
	if ack := c.Connect(&packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60, UsernameFlag: true, Username: user,
		PasswordFlag: true, Password: []byte(ctlPassword)}); ack.ReasonCode != packet.Success {
		t.Fatalf("%s on %s: CONNACK %v", id, n.name, ack.ReasonCode)
	}
	return c
}

// send publishes from c and waits for PUBACK (QoS 1), which must be
// Success: a node does not know other nodes' subscribers.
func send(t *testing.T, c *mqtttest.Client, topic, payload string, qos byte, retain bool, pid uint16) {
	t.Helper()
	p := &packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}
	if qos > 0 {
		p.PacketID = pid
	}
	c.Send(p)
	if qos == 1 {
		p, err := c.Read(mqtttest.Timeout)
		if err != nil {
			t.Fatalf("no PUBACK: %v", err)
		}
		if a, ok := p.(*packet.Puback); !ok || a.PacketID != pid || a.ReasonCode != packet.Success {
			t.Fatalf("got %s %+v, want PUBACK %d Success", p.Type(), p, pid)
		}
	}
}

// next reads c's next PUBLISH that is not a probe (topic ending in
// /probe), acknowledging QoS 1; nil when none comes within d.
func next(t *testing.T, c *mqtttest.Client, d time.Duration) *packet.Publish {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		p, err := c.Read(left)
		if err != nil {
			return nil
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			t.Fatalf("got %s, want PUBLISH", p.Type())
		}
		if pub.QoS == 1 {
			c.Send(&packet.Puback{PacketID: pub.PacketID})
		}
		if !strings.HasSuffix(pub.Topic, "/probe") {
			return pub
		}
	}
}

// awaitInterest publishes QoS 0 probes on prefix/probe from pub until
// each of subs has received one: the subscriptions' interest has reached
// the publisher's node (it takes milliseconds after SUBACK).
func awaitInterest(t *testing.T, pub *mqtttest.Client, prefix string, subs ...*mqtttest.Client) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range subs {
		for {
			if time.Now().After(deadline) {
				t.Fatalf("no probe on %s/probe reached a subscriber", prefix)
			}
			send(t, pub, prefix+"/probe", "p", 0, false, 0)
			p, err := s.Read(100 * time.Millisecond)
			if err == nil {
				if pub, ok := p.(*packet.Publish); ok && pub.Topic == prefix+"/probe" {
					break
				}
				t.Fatalf("got %s while waiting for a probe", p.Type())
			}
		}
	}
}

// TestClusterThreeProcesses runs three petrel serve processes as one
// cluster on loopback: a subscriber on node 2 gets what node 1 publishes
// (QoS 0 and 1, 3.1.1 and 5.0); a retained message set on node 1 is read
// on node 3; a $share group with members on nodes 2 and 3 gets every
// message once; a client id connecting on node 3 takes its session over
// from node 1 (DISCONNECT 0x8E), the same id in another tenant is left
// alone; petrel cluster status reports the three nodes; each node's
// /metrics has its cluster series.
func TestClusterThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts three brokers")
	}
	nodes := startCluster3(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	t.Run("status", func(t *testing.T) {
		env := []string{"PETREL_ADMIN_URL=http://" + n1.admin, "PETREL_ADMIN_USER=op", "PETREL_ADMIN_PASSWORD=" + ctlPassword}
		mqtttest.Eventually(t, 20*time.Second, func() bool {
			var out, errb bytes.Buffer
			if clusterMain([]string{"status", "--json"}, env, &out, &errb) != 0 {
				return false
			}
			var c api.Cluster
			if err := json.Unmarshal(out.Bytes(), &c); err != nil {
				t.Fatalf("petrel cluster status --json: %v\n%s", err, out.String())
			}
			connected := 0
			for _, n := range c.Nodes {
				if n.Connected {
					connected++
				}
			}
			return c.Node == "n1" && c.Ready && connected == 3
		}, "petrel cluster status shows three connected nodes")
		var out, errb bytes.Buffer
		if code := clusterMain([]string{"status"}, env, &out, &errb); code != 0 || !strings.Contains(out.String(), "n3") {
			t.Fatalf("petrel cluster status: exit %d\n%s%s", code, out.String(), errb.String())
		}
		u1 := []string{env[0], "PETREL_ADMIN_USER=u1", "PETREL_ADMIN_PASSWORD=" + ctlPassword}
		if code := clusterMain([]string{"status"}, u1, &out, &errb); code == 0 {
			t.Fatal("a tenant's user read the cluster status")
		}
	})

	t.Run("routing", func(t *testing.T) {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			sub := join(t, n2, v, "u1", "sub-"+v.String(), true)
			sub.Subscribe(1, packet.Subscription{Filter: "route/" + v.String() + "/#", QoS: 1})
			pub := join(t, n1, v, "u1", "pub-"+v.String(), true)
			awaitInterest(t, pub, "route/"+v.String(), sub)
			for qos := byte(0); qos <= 1; qos++ {
				topic := fmt.Sprintf("route/%s/q%d", v, qos)
				send(t, pub, topic, "hello", qos, false, 7)
				p := next(t, sub, mqtttest.Timeout)
				if p == nil || p.Topic != topic || string(p.Payload) != "hello" || p.QoS != qos {
					t.Fatalf("%s on node 2 got %+v, want %s hello QoS %d", v, p, topic, qos)
				}
			}
		}
	})

	t.Run("metrics", func(t *testing.T) { testClusterMetrics(t, nodes) })

	t.Run("retained", func(t *testing.T) {
		pub := join(t, n1, packet.V311, "u1", "ret-pub", true)
		send(t, pub, "ret/1", "v1", 1, true, 1)
		mqtttest.Eventually(t, 20*time.Second, func() bool {
			s := join(t, n3, packet.V311, "u1", "ret-sub", true)
			defer s.Conn.Close()
			s.Subscribe(1, packet.Subscription{Filter: "ret/#", QoS: 1})
			p := next(t, s, 500*time.Millisecond)
			return p != nil && p.Topic == "ret/1" && string(p.Payload) == "v1" && p.Retain
		}, "node 3 sends the retained message set on node 1")
	})

	t.Run("shared", func(t *testing.T) {
		m2 := join(t, n2, packet.V5, "u1", "member-2", true)
		m2.Subscribe(1, packet.Subscription{Filter: "$share/g/shared/#", QoS: 1})
		m3 := join(t, n3, packet.V5, "u1", "member-3", true)
		m3.Subscribe(1, packet.Subscription{Filter: "$share/g/shared/#", QoS: 1})
		pub := join(t, n1, packet.V5, "u1", "share-pub", true)
		awaitInterest(t, pub, "shared", m2, m3) // each has had one: both nodes' interest is known on node 1
		const n = 20
		for i := range n {
			send(t, pub, "shared/m", fmt.Sprint(i), 1, false, uint16(i+1))
		}
		seen := map[string]int{}
		per := map[string]int{}
		for name, m := range map[string]*mqtttest.Client{"node 2": m2, "node 3": m3} {
			for p := next(t, m, time.Second); p != nil; p = next(t, m, time.Second) {
				seen[string(p.Payload)]++
				per[name]++
			}
		}
		if len(seen) != n {
			t.Fatalf("the group got %d distinct messages of %d: %v", len(seen), n, seen)
		}
		for m, k := range seen {
			if k != 1 {
				t.Fatalf("message %s reached the group %d times, want once", m, k)
			}
		}
		if per["node 2"] == 0 || per["node 3"] == 0 {
			t.Fatalf("deliveries per node %v: not balanced across the nodes", per)
		}
	})

	t.Run("takeover", func(t *testing.T) {
		old := join(t, n1, packet.V5, "u1", "dev-1", true)
		other := join(t, n1, packet.V5, "u2", "dev-1", true) // tenant t2's dev-1
		join(t, n3, packet.V5, "u1", "dev-1", true)
		got := old.ExpectClosed()
		if len(got) != 1 {
			t.Fatalf("node 1's connection got %v before closing, want DISCONNECT 0x8E", got)
		}
		if d, ok := got[0].(*packet.Disconnect); !ok || d.ReasonCode != packet.SessionTakenOver {
			t.Fatalf("node 1's connection got %s %+v, want DISCONNECT 0x8E [MQTT-3.1.4-2]", got[0].Type(), got[0])
		}
		other.Send(&packet.Pingreq{})
		if p, err := other.Read(mqtttest.Timeout); err != nil {
			t.Fatalf("tenant t2's dev-1 on node 1 lost its connection: %v", err)
		} else if _, ok := p.(*packet.Pingresp); !ok {
			t.Fatalf("tenant t2's dev-1 got %s, want PINGRESP", p.Type())
		}
	})
}

// testClusterMetrics: each node's /metrics shows it ready with routes to
// the two others; exactly one node leads the retained stream and exports
// its two followers' lag; node 1 counted the messages it forwarded to a
// subscriber on node 2, node 2 those it received; a tenant's user gets
// 403.
func testClusterMetrics(t *testing.T, nodes []*clusterNode) {
	sub := join(t, nodes[1], packet.V311, "u1", "metrics-sub", true)
	sub.Subscribe(1, packet.Subscription{Filter: "metered/#", QoS: 0})
	pub := join(t, nodes[0], packet.V311, "u1", "metrics-pub", true)
	awaitInterest(t, pub, "metered", sub)
	pages := make([]string, len(nodes))
	mqtttest.Eventually(t, 20*time.Second, func() bool {
		leaders := 0
		for i, n := range nodes {
			code, body := getMetrics(t, n.admin, "op")
			if code != http.StatusOK {
				t.Fatalf("%s /metrics: HTTP %d", n.name, code)
			}
			pages[i] = body
			if v, _ := metricValue(body, `petrel_cluster_asset_leader\{asset="PETREL_RETAINED"\}`); v == 1 {
				leaders++
			}
		}
		return leaders == 1
	}, "one node leading the retained stream")
	for i, n := range nodes {
		body := pages[i]
		for re, want := range map[string]float64{`petrel_cluster_ready`: 1, `petrel_cluster_routes`: 2} {
			if v, ok := metricValue(body, re); !ok || v != want {
				t.Errorf("%s: %s = %v (present %v), want %v", n.name, re, v, ok, want)
			}
		}
		lags := regexp.MustCompile(`(?m)^petrel_cluster_asset_lag\{asset="PETREL_RETAINED",follower="(n\d)"\} `).FindAllStringSubmatch(body, -1)
		if v, _ := metricValue(body, `petrel_cluster_asset_leader\{asset="PETREL_RETAINED"\}`); v == 1 {
			if len(lags) != 2 || lags[0][1] == n.name || lags[1][1] == n.name {
				t.Errorf("%s leads the retained stream with lag series %q, want the two other nodes", n.name, lags)
			}
		} else if len(lags) != 0 {
			t.Errorf("%s follows the retained stream but exports lag %q", n.name, lags)
		}
	}
	if v, _ := metricValue(pages[0], `petrel_cluster_forwarded_total`); v < 1 {
		t.Errorf("n1 forwarded %v messages, want at least 1", v)
	}
	if v, _ := metricValue(pages[1], `petrel_cluster_received_total`); v < 1 {
		t.Errorf("n2 received %v messages, want at least 1", v)
	}
	if code, _ := getMetrics(t, nodes[0].admin, "u1"); code != http.StatusForbidden {
		t.Errorf("a tenant's user scraping /metrics: HTTP %d, want 403", code)
	}
}
