//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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

// procFDSize is the size of process pid's descriptor table: FDSize in
// /proc/PID/status.
func procFDSize(t *testing.T, pid int) int {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/status", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if v, ok := bytes.CutPrefix(s.Bytes(), []byte("FDSize:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no FDSize in %s", path)
	return 0
}
