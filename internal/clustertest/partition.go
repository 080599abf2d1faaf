// Package clustertest cuts a cluster's routes for tests: every route
// between the nodes goes through a proxy of the test, which can split
// the nodes into two sides (a network partition, every node up) and
// join them again.
package clustertest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Partition is the proxies of one cluster: one per node, listening on
// the address the node advertises (cluster.advertise, the address in the
// other nodes' peers, and what route gossip tells a third). A proxy
// learns which node dialed from the route's first two lines (CONNECT,
// then the dialing server's INFO naming it) and, while the nodes are
// split, cuts the connections between the two sides and refuses new
// ones.
type Partition struct {
	mu      sync.Mutex
	side    map[string]bool // node -> on the minority side, while split (nil: whole)
	conns   map[*proxied]struct{}
	lns     []net.Listener
	unnamed int
}

// proxied is one route connection through a proxy.
type proxied struct {
	from, to  string // the dialing node ("" until its INFO), the node dialed
	in, out   net.Conn
	closeOnce sync.Once
}

func (p *proxied) close() {
	p.closeOnce.Do(func() {
		p.in.Close()
		p.out.Close()
	})
}

// New starts a proxy for each node (names[i] listening for routes on
// listen[i]) on the free port of ports[i], and returns the addresses the
// nodes must advertise and list as their peers. The proxies close when
// the test ends.
func New(t testing.TB, names, listen []string, ports []int) ([]string, *Partition) {
	t.Helper()
	p := &Partition{conns: map[*proxied]struct{}{}}
	addrs := make([]string, len(names))
	for i := range names {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])))
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		p.lns = append(p.lns, l)
		go p.serve(l, names[i], listen[i])
	}
	t.Cleanup(func() {
		for _, l := range p.lns {
			l.Close()
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			c.close()
		}
	})
	return addrs, p
}

// Split puts the nodes named in minority on one side and the others on
// the other: the routes across are closed at once, and new ones refused.
func (p *Partition) Split(minority ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.side = map[string]bool{}
	for _, n := range minority {
		p.side[n] = true
	}
	for c := range p.conns {
		if p.cutLocked(c) {
			c.close()
			delete(p.conns, c)
		}
	}
}

// Heal ends the split: routes are let through again.
func (p *Partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.side = nil
}

// Unnamed returns the number of route connections whose dialing node the
// proxies could not tell (a split would not cut them): a test of a split
// must see 0.
func (p *Partition) Unnamed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unnamed
}

// cutLocked reports whether c joins the two sides of the split.
func (p *Partition) cutLocked(c *proxied) bool {
	return p.side != nil && c.from != "" && p.side[c.from] != p.side[c.to]
}

func (p *Partition) serve(l net.Listener, node, target string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go p.forward(in, node, target)
	}
}

func (p *Partition) forward(in net.Conn, node, target string) {
	out, err := net.Dial("tcp", target)
	if err != nil {
		in.Close()
		return
	}
	c := &proxied{to: node, in: in, out: out}
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	go func() {
		_, _ = io.Copy(in, out) // the dialed server's INFO first, then everything
		c.close()
	}()
	// The dialing server sends its CONNECT, then its INFO, which names it.
	r := bufio.NewReader(in)
	var head strings.Builder
	var from string
	for range 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		head.WriteString(line)
		if js, ok := strings.CutPrefix(strings.TrimSpace(line), "INFO "); ok {
			var info struct {
				Name string `json:"server_name"`
			}
			if json.Unmarshal([]byte(js), &info) == nil {
				from = info.Name
			}
		}
	}
	p.mu.Lock()
	c.from = from
	if from == "" {
		p.unnamed++
	}
	cut := p.cutLocked(c)
	p.mu.Unlock()
	if cut {
		return
	}
	if _, err := io.WriteString(out, head.String()); err != nil {
		return
	}
	_, _ = io.Copy(out, r)
}
