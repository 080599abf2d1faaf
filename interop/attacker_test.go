package interop_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// The two-tenant attacker (issue 18): an attacker in tenant B, or another
// principal of tenant A with other roles, tries to read or affect tenant
// A's data through every door the broker has: client ids, subscriptions,
// publishing, resumption, reloads, re-authentication, takeover races and
// share groups. Every scenario counts crossings (tenant A's messages
// received by the attacker, the attacker's messages received by tenant A,
// tenant A's state changed: session discarded, connection kicked, will
// cancelled, subscription gained, queue drained) and must count 0; and
// every scenario checks that tenant A's legitimate traffic still flows on
// the same path, so a broker that delivers nothing cannot pass.
//
// The scenarios are generated from families x MQTT versions x credential
// kinds (users file, JWT) x store (ephemeral memstore, disk) where it
// matters. The helpers are in attacker_helpers_test.go, the families in
// attacker_*_test.go.

// scenario is one attack, run once per version, attacker and store.
type scenario struct {
	name      string
	versions  []packet.Version      // default: 3.1.1 and 5.0
	attackers []string              // principals; default: "B", "B-jwt"
	stores    []string              // default: "mem"
	tweak     func(*broker.Options) // broker options, when not the defaults
	run       func(t *testing.T, w *world, atk string)
}

// families lists every family's scenarios.
func families() [][]scenario {
	return [][]scenario{
		reuseScenarios(),
		subscribeScenarios(),
		publishScenarios(),
		resumeScenarios(),
		reloadScenarios(),
		reauthScenarios(),
		raceScenarios(),
		shareScenarios(),
		boundsScenarios(),
	}
}

// concurrentScenarios bounds the scenarios running at once. They spend
// their time waiting on sockets, not computing, so more of them run
// together than the -parallel default (GOMAXPROCS) would allow.
const concurrentScenarios = 8

// TestTwoTenantAttacker runs every scenario of every family, each against
// its own broker and auth.Service, concurrentScenarios at a time (t.Run
// from several goroutines; each subtest is independent).
func TestTwoTenantAttacker(t *testing.T) {
	sem := make(chan struct{}, concurrentScenarios)
	var wg sync.WaitGroup
	count := 0
	for _, fam := range families() {
		for _, sc := range fam {
			versions, attackers, stores := sc.versions, sc.attackers, sc.stores
			if versions == nil {
				versions = bothVersions
			}
			if attackers == nil {
				attackers = []string{"B", "B-jwt"}
			}
			if stores == nil {
				stores = []string{"mem"}
			}
			for _, v := range versions {
				for _, atk := range attackers {
					for _, store := range stores {
						count++
						name := fmt.Sprintf("%s/%s/%s/%s", sc.name, v, atk, store)
						sem <- struct{}{}
						wg.Go(func() {
							defer func() { <-sem }()
							t.Run(name, func(t *testing.T) {
								w := newWorld(t, v, store, sc.tweak)
								sc.run(t, w, atk)
							})
						})
					}
				}
			}
		}
	}
	wg.Wait()
	t.Logf("%d scenarios", count)
}

// allVersions adds MQTT 3.1 (MQIsdp) to the families where the legacy
// protocol's own path matters.
var allVersions = []packet.Version{packet.V31, packet.V311, packet.V5}

// tenantOf is the tenant of a principal of the world.
func tenantOf(who string) string { return principals[who].tenant }
