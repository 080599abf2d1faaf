package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionString(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"clone, modified", &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc123", "true")},
			"petrel (devel) commit abc123 (modified) 2026-12-01T10:00:00Z go1.26"},
		{"clone, clean", &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc123", "false")},
			"petrel (devel) commit abc123 2026-12-01T10:00:00Z go1.26"},
		{"go install", &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v1.4.0"}},
			"petrel v1.4.0 go1.26"},
	} {
		if got := versionString(tc.info, true); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := versionString(nil, false); got != "petrel dev" {
		t.Errorf("no build info: %q", got)
	}
}

// TestVersionCommandNamesTheCommit: a binary built from a clone names the
// commit it was built from. The test clones the repository's HEAD into a
// temporary folder (Go stamps no commit in a git worktree, whose .git is
// a file) and builds there.
func TestVersionCommandNamesTheCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds the binary")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git clone, or no git:", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "petrel")
	if out, err := exec.Command("git", "clone", "-q", "--no-checkout", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	if out, err := exec.Command("git", "-C", clone, "checkout", "-q", strings.TrimSpace(string(head))).CombinedOutput(); err != nil {
		t.Fatalf("git checkout: %v\n%s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "petrel")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/petrel") // GOFLAGS may turn stamping off
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "petrel ") || !bytes.Contains(out, []byte("commit "+strings.TrimSpace(string(head)))) {
		t.Fatalf("petrel version: %q, want the commit %s", out, head)
	}
}
