// Package archtest checks that the module's imports point the way
// DESIGN.md section 1 says: packet, topic <- session, retain <- broker <-
// auth, store, admin, bridge, cluster, config <- cmd.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/petrel-mqtt/petrel"

// A layer is one row of the layering table: the packages matching pkg may
// import, outside test files, only what the row allows. Patterns are module
// relative; "x/..." matches x and every package below it.
type layer struct {
	pkg string
	// stdOnly: no third-party package, and no module package but those
	// in allow.
	stdOnly bool
	// allow, when not nil, lists the only module packages pkg may import
	// (the standard library and third-party modules stay allowed unless
	// stdOnly says otherwise). An empty non-nil list allows none.
	allow []string
	// deny lists module packages pkg must not import.
	deny []string
	// why names the rule in DESIGN.md.
	why string
}

// layers is the layering table. A new package adds a row here.
var layers = []layer{
	{pkg: "packet", stdOnly: true, why: "the codec uses the standard library only"},
	{pkg: "internal/topic", stdOnly: true, why: "topic uses the standard library only"},
	{pkg: "internal/session", stdOnly: true, allow: []string{"packet", "internal/topic"},
		why: "session sits on packet and topic only"},
	{pkg: "internal/retain", stdOnly: true, allow: []string{"packet", "internal/topic"},
		why: "retain sits on packet and topic only"},
	{pkg: "internal/fdtable", stdOnly: true, allow: []string{}, why: "sizing the descriptor table knows nothing of MQTT"},
	{pkg: "internal/heapfloor", stdOnly: true, allow: []string{}, why: "the collector's heap floor knows nothing of MQTT"},
	{pkg: "broker", deny: []string{
		"internal/auth/...", "internal/store/...", "internal/admin/...", "internal/bridge/...",
		"internal/cluster/...", "internal/config/...", "internal/listener/...", "internal/client/...", "cmd/...",
	}, why: "broker never imports a concrete implementation; those import broker"},
	{pkg: "internal/transport", stdOnly: true, allow: []string{},
		why: "raw sockets know nothing of MQTT: the broker may import transport, transport imports nothing of the broker"},
	{pkg: "internal/memsize", allow: []string{}, why: "reading the memory limit knows nothing of MQTT"},
	{pkg: "internal/listener/...", allow: []string{"internal/transport", "internal/ratelog", "internal/clientaddr"}, why: "listeners know nothing of MQTT"},
	{pkg: "internal/clientaddr", stdOnly: true, allow: []string{}, why: "finding the client behind trusted proxies knows nothing of MQTT"},
	{pkg: "internal/ratelog", allow: []string{}, why: "rate-limited logging knows nothing of MQTT"},
	{pkg: "internal/auditlog", allow: []string{"internal/ratelog"}, why: "the audit file knows nothing of MQTT"},
	{pkg: "internal/store/...", allow: []string{"broker", "packet", "internal/store/..."},
		why: "stores implement broker.Store on the broker's record types"},
	{pkg: "internal/auth/...", allow: []string{"broker", "packet", "internal/topic", "internal/ratelog", "internal/clientaddr"},
		why: "auth implements the broker's Authenticator and Authorizer"},
	{pkg: "internal/metrics", allow: []string{"broker", "packet", "internal/listener"},
		why: "metrics reads the broker's figures and the listeners' handshake counters"},
	{pkg: "contrib", allow: []string{"broker", "internal/metrics"},
		why: "contrib's test checks the dashboard and alert rules against the exported metrics"},
	{pkg: "internal/client/...", allow: []string{"packet", "internal/topic"}, why: "the client is a small client on packet/ (and topic validation)"},
	{pkg: "internal/bench/...", allow: []string{"packet", "internal/client/...", "internal/fdtable"}, why: "the load generator drives any broker over the wire"},
	{pkg: "internal/cluster/...", allow: []string{"broker", "packet", "internal/session", "internal/topic"},
		why: "the cluster implements the broker's Fabric on the broker's message type"},
	{pkg: "internal/config/...", allow: []string{"broker", "internal/auth/...", "internal/listener/...", "internal/clientaddr"},
		why: "the configuration turns a file into the broker's, the listeners' and auth's settings"},
	{pkg: "internal/mqtttest/...", allow: []string{"broker", "packet", "internal/listener/..."},
		why: "test helpers start the broker on real listeners and speak packet"},
	{pkg: "internal/clustertest", stdOnly: true, allow: []string{},
		why: "splitting a cluster's routes is a TCP proxy of the test: it knows nothing of the broker"},
	{pkg: "internal/archtest", stdOnly: true, allow: []string{}, why: "the layering check is a test of go list's output"},
	{pkg: "interop", stdOnly: true, allow: []string{}, why: "interop is tests only: its code lives in _test.go files"},
	{pkg: "bench/...", allow: []string{"packet"}, why: "the benchmark tools drive a broker over the wire"},
	{pkg: "cmd/...", why: "the command wires the implementations into the broker"},
	{pkg: "bench/...", allow: []string{"packet"}, why: "measuring tools drive any broker over the wire"},
	{pkg: "internal/admin/api", stdOnly: true, allow: []string{}, why: "the admin API's documents are plain types, shared by server and ctl"},
	{pkg: "internal/admin", allow: []string{"broker", "packet", "internal/admin/api"},
		why: "the admin API serves the broker's own view; it never reaches into auth, store or config"},
	{pkg: "internal/ctl", allow: []string{"internal/admin/api"}, why: "petrel ctl speaks to the admin API over HTTP only"},
}

// Rules for every package, test files included.
const (
	cmdPattern = "cmd/..." // nothing imports a command
)

// testOnly are the test helpers: imported by test files only.
var testOnly = []string{"internal/mqtttest/...", "internal/clustertest"}

// pkgInfo is what go list -json reports of a package, as far as used here.
type pkgInfo struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// matches reports whether the module-relative path rel matches pattern.
func matches(pattern, rel string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

func matchesAny(patterns []string, rel string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matches(p, rel) })
}

// classify splits an import path: module packages get their module-relative
// path; std reports a standard library package (no dot in the first element).
func classify(path string) (rel string, internal, std bool) {
	if path == module {
		return ".", true, false
	}
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r, true, false
	}
	first, _, _ := strings.Cut(path, "/")
	return "", false, !strings.Contains(first, ".")
}

// check returns one message per import that breaks a rule.
func check(pkgs []pkgInfo) []string {
	var bad []string
	for _, p := range pkgs {
		rel, internal, _ := classify(p.ImportPath)
		if !internal {
			continue
		}
		for _, imp := range p.Imports {
			irel, iinternal, istd := classify(imp)
			if iinternal && matches(cmdPattern, irel) {
				bad = append(bad, fmt.Sprintf("%s imports %s: nothing imports a command (cmd/ is flags and subcommands only)", rel, irel))
				continue
			}
			if iinternal && matchesAny(testOnly, irel) && !matchesAny(testOnly, rel) {
				bad = append(bad, fmt.Sprintf("%s imports %s outside test files: it is a test helper", rel, irel))
				continue
			}
			for _, l := range layers {
				if !matches(l.pkg, rel) {
					continue
				}
				switch {
				case iinternal && matchesAny(l.deny, irel):
					bad = append(bad, fmt.Sprintf("%s imports %s: %s", rel, irel, l.why))
				case iinternal && (l.allow != nil || l.stdOnly) && !matchesAny(l.allow, irel):
					bad = append(bad, fmt.Sprintf("%s imports %s, allowed only %q: %s", rel, irel, l.allow, l.why))
				case !iinternal && !istd && l.stdOnly:
					bad = append(bad, fmt.Sprintf("%s imports %s, a third-party package: %s", rel, imp, l.why))
				}
			}
		}
		// Test files may import anything but a command.
		for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
			if irel, iinternal, _ := classify(imp); iinternal && matches(cmdPattern, irel) {
				bad = append(bad, fmt.Sprintf("tests of %s import %s: nothing imports a command", rel, irel))
			}
		}
	}
	return bad
}

// listModule runs go list -json over every package of the module.
func listModule(t *testing.T) []pkgInfo {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkgInfo
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestLayering(t *testing.T) {
	pkgs := listModule(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		rel, _, _ := classify(p.ImportPath)
		seen[rel] = true
		if p.Error != nil {
			// go list -e still reports the imports it could parse; a
			// package that does not build fails its own tests.
			t.Logf("go list: %s: %s", rel, p.Error.Err)
		}
	}
	// The check must see the packages it is about, or it proves nothing.
	for _, want := range []string{"packet", "internal/topic", "internal/session", "internal/retain", "broker", "cmd/petrel"} {
		if !seen[want] {
			t.Errorf("go list did not report package %s", want)
		}
	}
	for _, msg := range check(pkgs) {
		t.Error(msg)
	}
}

// TestEveryPackageHasARow: each package of the module matches a row of
// the layering table, so that a new package cannot go unchecked.
func TestEveryPackageHasARow(t *testing.T) {
	for _, p := range listModule(t) {
		rel, internal, _ := classify(p.ImportPath)
		if !internal {
			continue
		}
		if !slices.ContainsFunc(layers, func(l layer) bool { return matches(l.pkg, rel) }) {
			t.Errorf("package %s has no row in the layering table (layers)", rel)
		}
	}
}

// TestCheckCatchesWrongEdges feeds check a made-up module with one wrong
// edge per rule, so that a rule that stopped working shows.
func TestCheckCatchesWrongEdges(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	tests := []struct {
		name string
		pkg  pkgInfo
		bad  bool
	}{
		{"packet std", pkgInfo{ImportPath: m("packet"), Imports: []string{"bytes", "io"}}, false},
		{"packet third party", pkgInfo{ImportPath: m("packet"), Imports: []string{"golang.org/x/net/websocket"}}, true},
		{"packet module", pkgInfo{ImportPath: m("packet"), Imports: []string{m("internal/topic")}}, true},
		{"topic imports packet", pkgInfo{ImportPath: m("internal/topic"), Imports: []string{m("packet")}}, true},
		{"session on packet and topic", pkgInfo{ImportPath: m("internal/session"), Imports: []string{m("packet"), m("internal/topic"), "sync"}}, false},
		{"session imports broker", pkgInfo{ImportPath: m("internal/session"), Imports: []string{m("broker")}}, true},
		{"retain imports retain sub", pkgInfo{ImportPath: m("internal/retain"), Imports: []string{m("internal/session")}}, true},
		{"broker on session", pkgInfo{ImportPath: m("broker"), Imports: []string{m("internal/session"), m("internal/retain")}}, false},
		{"broker imports store", pkgInfo{ImportPath: m("broker"), Imports: []string{m("internal/store/memstore")}}, true},
		{"broker imports auth", pkgInfo{ImportPath: m("broker"), Imports: []string{m("internal/auth")}}, true},
		{"broker imports config", pkgInfo{ImportPath: m("broker"), Imports: []string{m("internal/config")}}, true},
		{"broker test imports config", pkgInfo{ImportPath: m("broker"), XTestImports: []string{m("internal/config")}}, false},
		{"config imports broker", pkgInfo{ImportPath: m("internal/config"), Imports: []string{m("broker")}}, false},
		{"config imports cmd", pkgInfo{ImportPath: m("internal/config"), Imports: []string{m("cmd/petrel")}}, true},
		{"test imports cmd", pkgInfo{ImportPath: m("internal/config"), TestImports: []string{m("cmd/petrel")}}, true},
		{"mqtttest in non-test code", pkgInfo{ImportPath: m("internal/auth"), Imports: []string{m("internal/mqtttest")}}, true},
		{"mqtttest in tests", pkgInfo{ImportPath: m("broker"), XTestImports: []string{m("internal/mqtttest")}}, false},
		{"clustertest in non-test code", pkgInfo{ImportPath: m("internal/cluster"), Imports: []string{m("internal/clustertest")}}, true},
		{"clustertest in tests", pkgInfo{ImportPath: m("internal/cluster"), TestImports: []string{m("internal/clustertest")}}, false},
		{"listener imports packet", pkgInfo{ImportPath: m("internal/listener"), Imports: []string{m("packet")}}, true},
		{"listener third party", pkgInfo{ImportPath: m("internal/listener"), Imports: []string{"github.com/gorilla/websocket"}}, false},
		{"heapfloor imports packet", pkgInfo{ImportPath: m("internal/heapfloor"), Imports: []string{m("packet")}}, true},
		{"heapfloor std", pkgInfo{ImportPath: m("internal/heapfloor"), Imports: []string{"runtime/debug", "runtime/metrics"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check([]pkgInfo{tt.pkg})
			if bad := len(got) > 0; bad != tt.bad {
				t.Errorf("check(%+v) = %q, want a violation: %v", tt.pkg, got, tt.bad)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, rel string
		want         bool
	}{
		{"broker", "broker", true},
		{"broker", "brokers", false},
		{"broker", "broker/x", false},
		{"internal/store/...", "internal/store", true},
		{"internal/store/...", "internal/store/memstore", true},
		{"internal/store/...", "internal/storex", false},
		{"cmd/...", "cmd/petrel", true},
	}
	for _, tt := range tests {
		if got := matches(tt.pattern, tt.rel); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.pattern, tt.rel, got, tt.want)
		}
	}
}
