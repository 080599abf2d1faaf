//go:build linux

package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/fdtable"
)

// TestServeSizesFDTable: petrel serve sizes its descriptor table for
// runtime.fd_table_size before it listens (internal/fdtable), and leaves
// it to grow when the setting is 0.
func TestServeSizesFDTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	for _, tc := range []struct {
		size    int
		atLeast bool // FDSize at least 4096, or below it
	}{{4096, true}, {0, false}} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			cfg := filepath.Join(dir, fmt.Sprintf("petrel-%d.yaml", tc.size))
			write(t, cfg, fmt.Sprintf(`
log: {level: debug}
store: {type: memory}
runtime: {fd_table_size: %d}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
`, tc.size))
			cmd := exec.Command(bin, "serve", "--config", cfg)
			logs := startServe(t, cmd)
			waitFor(t, logs, 1)
			n := procFDSize(t, cmd.Process.Pid)
			if tc.atLeast {
				if n < 4096 {
					t.Errorf("FDSize %d, want at least 4096", n)
				}
				if !strings.Contains(logs.String(), `msg="descriptor table sized" descriptors=4096`) {
					t.Errorf("no log line for the sizing:\n%s", logs.String())
				}
			} else if n >= 4096 {
				t.Errorf("FDSize %d with fd_table_size 0: sized anyway", n)
			}
		})
	}
}

func procFDSize(t *testing.T, pid int) int {
	t.Helper()
	n, err := fdtable.Size(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
