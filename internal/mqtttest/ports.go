package mqtttest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Port ranges for tests that must name a port before the server that
// listens on it starts (a cluster's route ports, every peer's list naming
// the others), one range per package, since `go test ./...` runs packages
// side by side. They lie below Linux's ephemeral range (32768 to 60999 by
// default), where the kernel takes the local ports of outgoing
// connections: a port picked there, closed and bound again a moment (or,
// for a node killed and restarted, seconds) later may meanwhile be the
// local end of any connection on the machine.
const (
	ClusterPorts = 20000 // internal/cluster: [20000, 26000)
	CmdPorts     = 26000 // cmd/petrel: [26000, 32000)
	portsSpan    = 6000
)

// FreePorts returns n distinct ports of the range starting at base that
// could be bound on 127.0.0.1 just now, picked at random.
func FreePorts(t testing.TB, n, base int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free ports in [%d, %d) after %d tries", n, base, base+portsSpan, tries)
		}
		p := base + rand.IntN(portsSpan)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // taken (by another test, say)
		}
		ls = append(ls, l) // held until all are picked: distinct
		ports = append(ports, p)
	}
	return ports
}
