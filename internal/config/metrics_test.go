package config

import (
	"strings"
	"testing"
	"time"
)

// TestSysIntervalAndTenantLabels: sys_interval defaults to 10s, 0 turns
// the $SYS topics off, anything else below a second is refused;
// metrics.tenant_labels defaults to 0 and is bounded.
func TestSysIntervalAndTenantLabels(t *testing.T) {
	for _, tc := range []struct {
		in       string
		interval time.Duration
		labels   int
	}{
		{"", DefaultSysInterval, 0},
		{"log: {level: info}\n", DefaultSysInterval, 0},
		{"sys_interval: 0s\n", 0, 0},
		{"sys_interval: 1m\nmetrics: {tenant_labels: 20}\n", time.Minute, 20},
	} {
		c, err := Parse([]byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.SysInterval != tc.interval || c.Metrics.TenantLabels != tc.labels {
			t.Errorf("%q: sys_interval %v, tenant_labels %d; want %v, %d", tc.in, c.SysInterval, c.Metrics.TenantLabels, tc.interval, tc.labels)
		}
	}
	for in, key := range map[string]string{
		"sys_interval: 10ms\n":             "sys_interval",
		"sys_interval: -1s\n":              "sys_interval",
		"metrics: {tenant_labels: -1}\n":   "metrics.tenant_labels",
		"metrics: {tenant_labels: 1001}\n": "metrics.tenant_labels",
		"metrics: {tenant_label: 3}\n":     "metrics.tenant_label",
	} {
		if _, err := Parse([]byte(in), nil); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", in, err, key)
		}
	}
}
