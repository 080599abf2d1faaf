package cluster

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// A network the test can partition: every route between the nodes goes
// through a proxy in the test, one per node (its Advertise address, the
// address in the others' Peers, and what route gossip tells a third).
// A proxy learns which node dialed from the route's CONNECT (its "name"
// is the dialing server's id) and cuts the connections between nodes on
// the two sides of a partition, and refuses new ones, until healed.
type partNet struct {
	t     testing.TB
	mu    sync.Mutex
	ids   map[string]string // server id -> node
	side  map[string]int    // node -> its side while partitioned (nil: whole)
	conns map[*proxied]struct{}
	lns   []net.Listener
	// unnamed counts connections whose first line named no node: the
	// partition could not cut them.
	unnamed int
}

// proxied is one route connection through a proxy.
type proxied struct {
	from      string // the dialing server's id ("" until its CONNECT)
	to        string // the node dialed
	in, out   net.Conn
	closeOnce sync.Once
}

func (p *proxied) close() {
	p.closeOnce.Do(func() {
		p.in.Close()
		p.out.Close()
	})
}

// partitionable rewires cfgs so that every route goes through a proxy of
// the returned network, and closes the proxies when the test ends.
func partitionable(t testing.TB, cfgs []Config) *partNet {
	t.Helper()
	pn := &partNet{t: t, ids: map[string]string{}, conns: map[*proxied]struct{}{}}
	ports := mqtttest.FreePorts(t, len(cfgs), mqtttest.ClusterPorts)
	addrs := make([]string, len(cfgs))
	for i := range cfgs {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(ports[i])
		l, err := net.Listen("tcp", addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		pn.lns = append(pn.lns, l)
		go pn.serve(l, cfgs[i].Node, cfgs[i].Listen)
	}
	for i := range cfgs {
		cfgs[i].Advertise = addrs[i]
		cfgs[i].Peers = nil
		for j := range cfgs {
			if j != i {
				cfgs[i].Peers = append(cfgs[i].Peers, addrs[j])
			}
		}
	}
	t.Cleanup(func() {
		for _, l := range pn.lns {
			l.Close()
		}
		pn.mu.Lock()
		defer pn.mu.Unlock()
		for p := range pn.conns {
			p.close()
		}
	})
	return pn
}

// know records the nodes' server ids (known once they started).
func (pn *partNet) know(ms []logMember) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	for _, m := range ms {
		pn.ids[m.srv.ID()] = m.cfg.Node
	}
}

// cutLocked reports whether p joins the two sides of the partition.
func (pn *partNet) cutLocked(p *proxied) bool {
	if pn.side == nil || p.from == "" {
		return false
	}
	from, ok := pn.ids[p.from]
	return ok && pn.side[from] != pn.side[p.to]
}

// partition splits the nodes: those named in minority on one side, the
// rest on the other. Connections across are closed at once.
func (pn *partNet) partition(minority ...string) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	pn.side = map[string]int{}
	for _, id := range pn.ids {
		pn.side[id] = 0
	}
	for _, n := range minority {
		pn.side[n] = 1
	}
	for p := range pn.conns {
		if pn.cutLocked(p) {
			p.close()
			delete(pn.conns, p)
		}
	}
}

// heal ends the partition: new connections go through again.
func (pn *partNet) heal() {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	pn.side = nil
}

// serve forwards the connections to node's route listener target.
func (pn *partNet) serve(l net.Listener, node, target string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go pn.forward(in, node, target)
	}
}

func (pn *partNet) forward(in net.Conn, node, target string) {
	out, err := net.Dial("tcp", target)
	if err != nil {
		in.Close()
		return
	}
	p := &proxied{to: node, in: in, out: out}
	pn.mu.Lock()
	pn.conns[p] = struct{}{}
	pn.mu.Unlock()
	defer func() {
		p.close()
		pn.mu.Lock()
		delete(pn.conns, p)
		pn.mu.Unlock()
	}()
	go func() {
		_, _ = io.Copy(in, out) // the listener's INFO first, then everything
		p.close()
	}()
	// The dialer's first line is its CONNECT, naming it.
	r := bufio.NewReader(in)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	var connect struct {
		Name string `json:"name"`
	}
	if js, ok := strings.CutPrefix(strings.TrimSpace(line), "CONNECT "); ok {
		_ = json.Unmarshal([]byte(js), &connect)
	}
	pn.mu.Lock()
	p.from = connect.Name
	if p.from == "" {
		pn.unnamed++
	}
	cut := pn.cutLocked(p)
	pn.mu.Unlock()
	if cut {
		return
	}
	if _, err := io.WriteString(out, line); err != nil {
		return
	}
	_, _ = io.Copy(out, r)
}
