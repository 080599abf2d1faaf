package auth

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// procStatusKiB reads a "Vm...:  N kB" line of /proc/self/status.
func procStatusKiB(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			n, err := strconv.ParseInt(string(bytes.Fields(rest)[0]), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestArgon2idFloodMemoryBounded sends 40 concurrent CONNECTs with wrong
// passwords for a user with an argon2id hash (64 MiB per check, as
// petrel passwd --argon2id) and measures the peak resident memory of the
// process (the broker runs in it). Unbounded, the 40 checks hold 2.5 GiB
// at once; within the check slots and the memory budget the peak stays
// far below 1 GiB.
func TestArgon2idFloodMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 40 argon2id passwords")
	}
	// petrel passwd's memory and lanes (64 MiB, p=1), one pass instead of
	// three to keep the test short: the memory is what is measured.
	hash := hashArgon2id([]byte("right"), argonParams{salt: make([]byte, 16), time: 1, memory: argonMemory, threads: argonThreads}, argonKeyLen)
	uf := writeUsers(t, fmt.Sprintf("  - {username: heavy, password: '%s', tenant: A}\n", hash))
	// Default slots and memory; the waits (the check's and the CONNECT's)
	// and the failure limits are opened up so that all 40 checks run.
	s, addr := startAuthBrokerWith(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxWait: 5 * time.Minute,
		UserFailures: 1000, AddressFailures: 1000}}, nil, broker.Options{ConnectTimeout: 5 * time.Minute})

	runtime.GC()
	debug.FreeOSMemory()
	// Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	base := procStatusKiB(t, "VmRSS")

	var wg sync.WaitGroup
	codes := make(chan packet.ReasonCode, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := connectCode(addr, packet.V311, fmt.Sprint("a", i), "heavy", "wrong")
			if err != nil {
				t.Error(err)
			}
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != packet.BadUsernameOrPassword {
			t.Fatalf("CONNACK %v, want 4 bad user name or password", code)
		}
	}
	peak := procStatusKiB(t, "VmHWM")
	grew := (peak - base) >> 10
	t.Logf("RSS before %d MiB, peak during 40 argon2id checks %d MiB (+%d MiB); stats %+v", base>>10, peak>>10, grew, s.Stats())
	if st := s.Stats(); st.Checks != 40 {
		t.Fatalf("%d checks ran, want 40", st.Checks)
	}
	if grew > 1024 {
		t.Fatalf("peak RSS grew by %d MiB for 40 argon2id checks, want under 1 GiB (64 MiB each, a few at once)", grew)
	}
}
