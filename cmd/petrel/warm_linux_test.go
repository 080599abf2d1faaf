//go:build linux && (amd64 || arm64)

package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// TestServeCPUWarming: by default (runtime.cpu_warming) petrel serve
// warms the CPUs while a client sends and stops when it stops; with
// cpu_warming: false it never does.
func TestServeCPUWarming(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir, bin := buildPetrel(t)
	for _, on := range []bool{true, false} {
		cfg := filepath.Join(dir, "warm.yaml")
		body := "log: {level: debug}\nstore: {type: memory}\nlisteners: [{name: plain, type: tcp, address: \"127.0.0.1:0\"}]\n"
		if !on {
			body += "runtime: {cpu_warming: false}\n"
		}
		write(t, cfg, body)
		cmd := exec.Command(bin, "serve", "--config", cfg)
		logs := startServe(t, cmd)
		addr := waitFor(t, logs, 1)["plain"]
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		buf, _ := (&packet.Connect{ClientID: "w", CleanStart: true}).Append(nil, packet.V311)
		nc.Write(buf)
		if _, err := packet.ReadPacket(nc, packet.V311, 0); err != nil {
			t.Fatal(err)
		}
		ping, _ := (&packet.Pingreq{}).Append(nil, packet.V311)
		for range 100 { // 100 ms of light traffic
			if _, err := nc.Write(ping); err != nil {
				t.Fatal(err)
			}
			if _, err := packet.ReadPacket(nc, packet.V311, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		nc.Close()
		switch {
		case !on:
			time.Sleep(100 * time.Millisecond)
			if strings.Contains(logs.String(), "CPU warming") {
				t.Errorf("warming without runtime.cpu_warming:\n%s", logs.String())
			}
		case runtime.NumCPU() < 2:
			waitLog(t, logs, `msg="petrel listening"`)
			if strings.Contains(logs.String(), "CPU warming ready") {
				t.Errorf("a warmer on one CPU:\n%s", logs.String())
			}
		default:
			waitLog(t, logs, `msg="CPU warming" state=warming`)
			waitLog(t, logs, `msg="CPU warming" state=dormant`)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}
