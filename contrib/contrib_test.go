// Package contrib holds the Grafana dashboard and the Prometheus alert
// rules shipped beside Petrel; its test keeps them in step with the
// metrics the broker exports.
package contrib

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/metrics"
)

// exported returns the names a query may use: every metric family the
// broker's collector can export (metrics.Names), and the Go runtime's and
// the process's as a live registry gathers them.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := metrics.New(b, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "petrel_") {
			names[f.GetName()] = true
		}
	}
	for _, n := range metrics.Names() {
		names[n] = true
	}
	return names
}

// metricName matches the identifiers of Petrel's, Go's and the process's
// metrics in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:petrel|go|process)_[a-zA-Z0-9_]*`)

// checkExpr fails unless expr names at least one metric and every metric
// it names is exported.
func checkExpr(t *testing.T, names map[string]bool, where, expr string) {
	t.Helper()
	used := metricName.FindAllString(expr, -1)
	if len(used) == 0 {
		t.Errorf("%s: %q names no Petrel metric", where, expr)
	}
	for _, n := range used {
		if !names[n] {
			t.Errorf("%s: %q uses %s, which Petrel does not export", where, expr, n)
		}
	}
}

// TestAlertRulesNameExportedMetrics parses contrib/prometheus/alerts.yml
// and checks every rule's expression against the exported metrics.
func TestAlertRulesNameExportedMetrics(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert  string
				Expr   string
				For    string
				Labels map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %+v: want an alert name and a severity", r)
			}
			checkExpr(t, names, "alert "+r.Alert, r.Expr)
			n++
		}
	}
	if n == 0 {
		t.Fatal("alerts.yml has no rules")
	}
}

// TestDashboardNamesExportedMetrics parses contrib/grafana/petrel.json and
// checks every panel query and template query against the exported
// metrics.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	names := exported(t)
	data, err := os.ReadFile("grafana/petrel.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("petrel.json: %v", err)
	}
	n := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, names, "panel "+p.Title, q.Expr)
			n++
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("template %s: %v", v.Name, err)
		}
		checkExpr(t, names, "template "+v.Name, q.Query)
	}
	if n == 0 {
		t.Fatal("the dashboard has no queries")
	}
}
