package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// versionString describes the binary: the -X version when set, else the
// module version (v1.2.3 when installed with go install, "(devel)" from a
// clone), then the commit and whether the tree had uncommitted changes
// when it was built from a clone, and the Go version.
func versionString(info *debug.BuildInfo, ok bool) string {
	v := version
	if !ok {
		return "petrel " + v
	}
	if v == "dev" && info.Main.Version != "" {
		v = info.Main.Version
	}
	var rev, modified, at string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		case "vcs.time":
			at = s.Value
		}
	}
	parts := []string{"petrel", v}
	if rev != "" {
		c := "commit " + rev
		if modified == "true" {
			c += " (modified)"
		}
		if at != "" {
			c += " " + at
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, " ") + fmt.Sprintf(" %s", info.GoVersion)
}

// buildVersion is versionString of the running binary.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	return versionString(info, ok)
}
