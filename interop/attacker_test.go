package interop_test

import (
	"fmt"
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
	}
}

// TestTwoTenantAttacker runs every scenario of every family, in parallel,
// each against its own broker and auth.Service.
func TestTwoTenantAttacker(t *testing.T) {
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
						t.Run(fmt.Sprintf("%s/%s/%s/%s", sc.name, v, atk, store), func(t *testing.T) {
							t.Parallel()
							w := newWorld(t, v, store, sc.tweak)
							sc.run(t, w, atk)
						})
					}
				}
			}
		}
	}
	t.Logf("%d scenarios", count)
}

// tenantOf is the tenant of a principal of the world.
func tenantOf(who string) string { return principals[who].tenant }
