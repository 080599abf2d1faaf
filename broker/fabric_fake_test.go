package broker_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/internal/topic"
)

// fakeCluster links brokers in one process through their Fabric and
// FabricHost methods, as internal/cluster does over NATS: a forwarded
// message reaches each other node with a matching plain Watch once, and
// each share group (one Watch per node holding members) on one node,
// round robin, the publisher's node included; retained changes reach
// every other node; a Claim kicks the node that held the key before. It
// checks the Fabric contract the broker must keep: Watch and Unwatch of
// one (filter, share) alternate, starting with Watch.
type fakeCluster struct {
	t  *testing.T
	mu sync.Mutex
	// Under mu.
	nodes    []*fakeNode
	owner    map[string]*fakeNode // session key -> node that claimed it last
	rr       map[string]int       // share -> deliveries, for round robin
	claimErr error
	// duringClaim, when set, runs inside a node's Claim once the key is
	// recorded for it (another node's claim racing this one).
	duringClaim func(n *fakeNode, key string)
}

func newFakeCluster(t *testing.T) *fakeCluster {
	return &fakeCluster{t: t, owner: make(map[string]*fakeNode), rr: make(map[string]int)}
}

type fakeKey struct{ filter, share string }

// fakeNode is one broker's Fabric in a fakeCluster. Its fields are under
// the cluster's mu.
type fakeNode struct {
	c       *fakeCluster
	name    string
	host    broker.FabricHost
	watched map[fakeKey]bool
	watches map[fakeKey]int // Watch calls
	unwatch map[fakeKey]int // Unwatch calls
	fwd     []string        // topics forwarded
	retain  []string        // topics whose retained message was replicated
	claims  []string
	release []string
}

// start starts a broker (StartBroker: 127.0.0.1:0, shut down at the end
// of the test) joined to the cluster.
func (c *fakeCluster) start(t *testing.T, name string, o broker.Options) (*fakeNode, *broker.Broker, string) {
	t.Helper()
	n := c.node(name)
	o.Fabric = n
	b, addr := mqtttest.StartBroker(t, o)
	return n, b, addr
}

// node adds a node that a broker binds to later (broker.New).
func (c *fakeCluster) node(name string) *fakeNode {
	n := &fakeNode{c: c, name: name, watched: map[fakeKey]bool{}, watches: map[fakeKey]int{}, unwatch: map[fakeKey]int{}}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

func (n *fakeNode) Bind(h broker.FabricHost) error {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.host = h
	return nil
}

func (n *fakeNode) Watch(filter, share string) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := fakeKey{filter, share}
	if n.watched[k] {
		n.c.t.Errorf("%s: Watch(%q, %q) twice without Unwatch", n.name, filter, share)
	}
	n.watched[k] = true
	n.watches[k]++
}

func (n *fakeNode) Unwatch(filter, share string) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := fakeKey{filter, share}
	if !n.watched[k] {
		n.c.t.Errorf("%s: Unwatch(%q, %q) without Watch", n.name, filter, share)
	}
	delete(n.watched, k)
	n.unwatch[k]++
}

func (n *fakeNode) Forward(msg *session.Message) {
	type target struct {
		n     *fakeNode
		share string
	}
	var targets []target
	n.c.mu.Lock()
	n.fwd = append(n.fwd, msg.Topic)
	groups := map[string][]*fakeNode{}
	for _, m := range n.c.nodes {
		plain := false
		for k := range m.watched {
			if !topic.Match(k.filter, msg.Topic) {
				continue
			}
			if k.share == "" {
				plain = true
			} else if !slices.Contains(groups[k.share], m) {
				groups[k.share] = append(groups[k.share], m)
			}
		}
		if plain && m != n && m.host != nil { // plain subscribers of the publisher's node were served by its trie
			targets = append(targets, target{m, ""})
		}
	}
	for share, members := range groups {
		pick := members[n.c.rr[share]%len(members)]
		n.c.rr[share]++
		targets = append(targets, target{pick, share})
	}
	n.c.mu.Unlock()
	for _, tg := range targets {
		tg.n.host.DeliverRemote(msg, tg.share)
	}
}

func (n *fakeNode) Retain(msg *session.Message) {
	n.c.mu.Lock()
	n.retain = append(n.retain, msg.Topic)
	var others []*fakeNode
	for _, m := range n.c.nodes {
		if m != n && m.host != nil {
			others = append(others, m)
		}
	}
	n.c.mu.Unlock()
	for _, m := range others {
		m.host.ApplyRetained(msg)
	}
}

func (n *fakeNode) Claim(ctx context.Context, key string) error {
	n.c.mu.Lock()
	if err := n.c.claimErr; err != nil {
		n.c.mu.Unlock()
		return err
	}
	n.claims = append(n.claims, key)
	prev := n.c.owner[key]
	n.c.owner[key] = n
	during := n.c.duringClaim
	n.c.mu.Unlock()
	if prev != nil && prev != n {
		prev.host.KickRemote(key)
	}
	if during != nil {
		during(n, key)
	}
	return ctx.Err()
}

func (n *fakeNode) Release(key string) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.release = append(n.release, key)
	if n.c.owner[key] == n {
		delete(n.c.owner, key)
	}
}

// watching reports whether n's last call for (filter, share) was Watch.
func (n *fakeNode) watching(filter, share string) bool {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.watched[fakeKey{filter, share}]
}

// calls returns the Watch and Unwatch calls made for (filter, share).
func (n *fakeNode) calls(filter, share string) (watches, unwatches int) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := fakeKey{filter, share}
	return n.watches[k], n.unwatch[k]
}

// shares returns the share keys n watches for filter.
func (n *fakeNode) shares(filter string) []string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	var out []string
	for k := range n.watched {
		if k.filter == filter && k.share != "" {
			out = append(out, k.share)
		}
	}
	return out
}

// forwarded returns the topics n forwarded, and those it replicated as
// retained.
func (n *fakeNode) forwarded() (fwd, retained []string) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return slices.Clone(n.fwd), slices.Clone(n.retain)
}

// released returns the session keys n released.
func (n *fakeNode) released() []string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return slices.Clone(n.release)
}
