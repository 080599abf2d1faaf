package metrics

import (
	"sort"

	"github.com/petrel-mqtt/petrel/broker"
)

type tenantValue struct {
	name string
	v    float64
}

// topN returns the n tenants with the largest value of get (ties broken
// by name, so the choice is stable between scrapes) and the sum of the
// others' values. Tenants whose value is 0 never take a label.
func topN(ts []broker.TenantFigures, n int, get func(*broker.TenantFigures) float64) (top []tenantValue, other float64) {
	all := make([]tenantValue, 0, len(ts))
	for i := range ts {
		all = append(all, tenantValue{ts[i].Tenant, get(&ts[i])})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].name < all[j].name
	})
	for i, t := range all {
		if i < n && t.v > 0 {
			top = append(top, t)
		} else {
			other += t.v
		}
	}
	return top, other
}
