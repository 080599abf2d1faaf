package diskstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// crashChildEnv names the data directory of a crash child process.
const crashChildEnv = "PETREL_DISKSTORE_CRASH_DIR"

const crashWriters = 8

// crashChild is the child of TestKill9: writers commit durable enqueues
// to their sessions forever, printing "committed W SEQ" after each
// Commit returned. It resumes each session after the last stored seq.
func crashChild() {
	dir := os.Getenv(crashChildEnv)
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(3)
	}
	st, err := broker.LoadAll(context.Background(), s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: load:", err)
		os.Exit(3)
	}
	next := make(map[string]uint64)
	for _, sess := range st.Sessions {
		if n := len(sess.Queue); n > 0 {
			next[sess.ClientID] = sess.Queue[n-1].Seq
		}
	}
	var out sync.Mutex
	for w := range crashWriters {
		id := fmt.Sprintf("w%d", w)
		seq := next[id]
		go func() {
			var b broker.Batch
			b.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V5, ExpiryInterval: broker.NoExpiry}})
			for {
				seq++
				b.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
					Seq: seq, QoS: 1, Msg: broker.StoredMessage{Topic: "crash/" + id, Payload: []byte(strconv.FormatUint(seq, 10)), QoS: 1},
				}})
				if err := s.Commit(&b, true); err != nil {
					fmt.Fprintln(os.Stderr, "child: commit:", err)
					os.Exit(3)
				}
				b.Reset()
				line := fmt.Sprintf("committed %s %d\n", id, seq)
				out.Lock()
				_, err := os.Stdout.WriteString(line) // one write: a line is whole or absent
				out.Unlock()
				if err != nil {
					os.Exit(3)
				}
			}
		}()
	}
	select {}
}

// TestKill9 kills a committing child with SIGKILL twice and checks that
// every commit it reported is there after each restart.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	acked := make(map[string]uint64) // highest reported seq per writer
	for round := range 2 {
		n := runCrashChild(t, dir, 700*time.Millisecond, acked)
		s := openT(t, dir, Options{})
		st, err := broker.LoadAll(context.Background(), s)
		if err != nil {
			t.Fatalf("round %d: Load after kill -9: %v", round, err)
		}
		stored := make(map[string][]broker.StoredDelivery)
		for _, sess := range st.Sessions {
			stored[sess.ClientID] = sess.Queue
		}
		for id, last := range acked {
			q := stored[id]
			if uint64(len(q)) < last {
				t.Errorf("round %d: %s: %d stored, but seq %d was acknowledged", round, id, len(q), last)
				continue
			}
			for i, d := range q {
				if d.Seq != uint64(i+1) || string(d.Msg.Payload) != strconv.FormatUint(d.Seq, 10) {
					t.Fatalf("round %d: %s: delivery %d is seq %d payload %q", round, id, i, d.Seq, d.Msg.Payload)
				}
			}
		}
		t.Logf("round %d: %d commits acknowledged before SIGKILL, all present", round, n)
		closeT(t, s)
	}
}

// runCrashChild runs the child for about d after its first commit, kills
// it with SIGKILL and records the acknowledged seqs; it returns how many
// it read.
func runCrashChild(t *testing.T, dir string, d time.Duration, acked map[string]uint64) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	var once sync.Once
	done := make(chan int)
	go func() {
		n := 0
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "committed" {
				continue
			}
			seq, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				continue
			}
			acked[f[1]] = max(acked[f[1]], seq)
			n++
			once.Do(func() { close(first) })
		}
		done <- n
	}()
	select {
	case <-first:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill() // the test fails anyway
		t.Fatal("child committed nothing within 20s")
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n := <-done
	_ = cmd.Wait() // "signal: killed" is expected
	if n == 0 {
		t.Fatal("no commit acknowledged")
	}
	return n
}
