package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestServeOnFullDisk runs petrel serve on a loop-mounted ext4 file system
// (root only; mqtttest.MountLoop) that fills up: it stops on SIGTERM, and
// restarted on the full disk it listens at once (within waitFor's 10 s),
// without spinning (a bounded number of log lines and CPU ticks over two
// seconds), with clean sessions working and what needs the store refused
// visibly (persistent CONNECT: return code 3 [MQTT-3.2.2-6]; a QoS 1
// PUBLISH to a persistent session: PUBACK 0x80, nothing acknowledged that
// is not stored). Once space is freed, the store recovers without a
// restart: the persistent session resumes with its stored messages.
func TestServeOnFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and mounts a file system")
	}
	mnt := mqtttest.MountLoop(t, 64)
	dir, bin := buildPetrel(t)
	cfg := filepath.Join(dir, "petrel.yaml")
	write(t, cfg, `
log: {level: info, format: text}
store: {data_dir: `+filepath.Join(mnt, "data")+`, min_free_space: 4MiB}
listeners: [{name: plain, type: tcp, address: "127.0.0.1:0"}]
`)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	logs := startServe(t, cmd)
	addr := waitFor(t, logs, 1)["plain"]
	keeper, _ := mqtttest.Connect(t, addr, packet.V311, "keeper", false)
	keeper.Subscribe(1, packet.Subscription{Filter: "t", QoS: 1})
	keeper.Conn.Close()
	pub, _ := mqtttest.Connect(t, addr, packet.V5, "pub", true)
	for i := uint16(1); i <= 2; i++ {
		pub.Send(&packet.Publish{Topic: "t", QoS: 1, PacketID: i, Payload: []byte("stored-" + strconv.Itoa(int(i)))})
		if ack, ok := pub.Expect().(*packet.Puback); !ok || ack.ReasonCode != packet.Success {
			t.Fatalf("publish %d before the disk filled: %+v", i, ack)
		}
	}
	pub.Conn.Close()

	mqtttest.FillFS(t, filepath.Join(mnt, "filler"))
	stopServe(t, cmd, logs)

	cmd = exec.Command(bin, "serve", "--config", cfg)
	logs = startServe(t, cmd)
	addr = waitFor(t, logs, 1)["plain"]
	waitLog(t, logs, "store opened read-only")

	clean, _ := mqtttest.Connect(t, addr, packet.V311, "clean", true)
	clean.Conn.Close()
	refusedConnect := func(id string) packet.ReasonCode {
		c := mqtttest.Dial(t, addr, packet.V311)
		defer c.Conn.Close()
		return c.Connect(&packet.Connect{ClientID: id, CleanStart: false, KeepAlive: 60}).ReasonCode
	}
	if code := refusedConnect("newcomer"); code != packet.ServerUnavailable {
		t.Fatalf("persistent CONNECT on a full disk: %v, want server unavailable (3)", code)
	}
	pub5, _ := mqtttest.Connect(t, addr, packet.V5, "pub5", true)
	pub5.Send(&packet.Publish{Topic: "t", QoS: 1, PacketID: 9, Payload: []byte("refused")})
	if ack, ok := pub5.Expect().(*packet.Puback); !ok || ack.ReasonCode != packet.UnspecifiedError {
		t.Fatalf("QoS 1 PUBLISH to a persistent session on a full disk: %+v, want PUBACK 0x80", ack)
	}

	// Quiet while the disk is full: no retry loop writing lines or
	// burning CPU (Pebble's own retries wrote ~280 lines a second at ~80%
	// of a core).
	lines0, ticks0 := strings.Count(logs.String(), "\n"), cpuTicks(t, cmd.Process.Pid)
	time.Sleep(2 * time.Second) // a span to count in, not a wait for an event
	lines, ticks := strings.Count(logs.String(), "\n")-lines0, cpuTicks(t, cmd.Process.Pid)-ticks0
	t.Logf("while the disk is full: %d log lines and %d CPU ticks in 2 s", lines, ticks)
	if lines > 5 || ticks > 50 {
		t.Errorf("%d log lines and %d CPU ticks (of 200) in 2 s on a full disk; want a quiet broker", lines, ticks)
	}

	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "store available again")
	keeper = mqtttest.Dial(t, addr, packet.V311)
	if ack := keeper.Connect(&packet.Connect{ClientID: "keeper", KeepAlive: 60}); ack.ReasonCode != packet.Success || !ack.SessionPresent {
		t.Fatalf("persistent CONNECT after space was freed: %+v, want success with the session present", ack)
	}
	for i := 1; i <= 2; i++ {
		p := keeper.ExpectPublish()
		if string(p.Payload) != "stored-"+strconv.Itoa(i) {
			t.Fatalf("message %d after the recovery: %q", i, p.Payload)
		}
		keeper.Send(&packet.Puback{PacketID: p.PacketID})
	}
	stopServe(t, cmd, logs)
}

// stopServe sends SIGTERM and waits (15 s at most) for a clean exit.
func stopServe(t *testing.T, cmd *exec.Cmd, logs *cmdOutput) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("petrel serve exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("petrel serve did not stop within 15 s of SIGTERM\n%s", logs.String())
	}
}

// cpuTicks returns the user and system CPU time of process pid, in clock
// ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, err1 := strconv.Atoi(f[11])
	s, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return u + s
}
