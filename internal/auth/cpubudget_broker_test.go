package auth

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// sprayFlood runs workers connections in loops of CONNECT with a new
// unknown username per attempt, each loop from its own source address of
// froms (round robin), until the returned stop is called. It counts the
// CONNACK codes.
func sprayFlood(t *testing.T, addr string, workers int, froms []string) (codes *sync.Map, stop func()) {
	t.Helper()
	codes = &sync.Map{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				code, err := connectCodeFrom(froms[i%len(froms)], addr, packet.V5, fmt.Sprintf("s%d-%d", i, n),
					fmt.Sprintf("spray-%d-%d", i, n), "guess")
				if err != nil {
					t.Error(err)
					return
				}
				v, _ := codes.LoadOrStore(code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	var once sync.Once
	return codes, func() { once.Do(func() { close(done); wg.Wait() }) }
}

func codeCount(codes *sync.Map, c packet.ReasonCode) int64 {
	if v, ok := codes.Load(c); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// TestSprayFloodHashingWithinCPUBudget: a flood of CONNECTs with a new
// unknown name per attempt, failure limits opened up so that every
// attempt costs a (dummy) hash check, over real sockets: the checks use at
// most auth.password_checks.cpu of CPU time per second (plus the burst and
// the checks running at the end), however fast the flood asks; the rest
// are refused busy (CONNACK 0x89 [MQTT-3.2.2-7]). Without the budget the
// one check slot hashes all the time.
func TestSprayFloodHashingWithinCPUBudget(t *testing.T) {
	uf := writeUsers(t, fmt.Sprintf("  - {username: honest, password: '%s', tenant: A}\n", bcryptHash(t, "pw", 6)))
	const cpu = 0.2
	s, addr := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxConcurrent: 1, CPU: cpu,
		MaxWait: 300 * time.Millisecond, UserFailures: 1 << 20, AddressFailures: 1 << 20}}, nil)

	// One check's cost, unloaded, for the slack of the bound.
	start := time.Now()
	if code := mustConnectCode(t, addr, packet.V5, "h0", "honest", "pw"); code != packet.Success {
		t.Fatalf("honest before the flood: %v", code)
	}
	one := time.Since(start)
	before := s.Stats()

	codes, stop := sprayFlood(t, addr, 16, []string{"127.0.0.1"})
	defer stop()
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return codeCount(codes, packet.ServerBusy) >= 20 },
		"the budget to refuse checks busy")
	time.Sleep(2 * time.Second)
	stop()
	elapsed := time.Since(start)
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return s.Stats().Running == 0 }, "the checks to end")

	st := s.Stats()
	spent := st.CPU - before.CPU
	// The burst, the rate over the run, and the check running at its end
	// (generously: 8 unloaded checks, or 500 ms). Without the budget the
	// slot hashes all the time: about elapsed.
	bound := time.Duration(cpu*float64(time.Second)) + time.Duration(cpu*float64(elapsed)) + max(8*one, 500*time.Millisecond)
	t.Logf("%v: %d hash checks, %v of hashing CPU (bound %v), %d waits for the budget; CONNACK 0x86 %d, 0x89 %d",
		elapsed, st.Checks-before.Checks, spent, bound, st.CPUWaits, codeCount(codes, packet.BadUsernameOrPassword),
		codeCount(codes, packet.ServerBusy))
	if spent > bound {
		t.Fatalf("the flood's checks took %v of CPU in %v, more than the budget's %v", spent, elapsed, bound)
	}
	if st.Checks-before.Checks == 0 || codeCount(codes, packet.BadUsernameOrPassword) == 0 {
		t.Fatalf("no check ran during the flood (stats %+v): the budget must slow checks, not stop them", st)
	}
}

// TestHonestClientDuringSprayFlood: the same flood from four addresses,
// with address_failures 5: the budget spreads the flood's first checks
// over time, the address limits then refuse it before hashing (0x9F), and
// an honest client from another address gets CONNACK 0 while the flood
// runs.
func TestHonestClientDuringSprayFlood(t *testing.T) {
	uf := writeUsers(t, fmt.Sprintf("  - {username: honest, password: '%s', tenant: A}\n", bcryptHash(t, "pw", 4)))
	s, addr := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxConcurrent: 1, CPU: 0.2,
		AddressFailures: 5, FailureWindow: time.Hour}}, nil)
	codes, stop := sprayFlood(t, addr, 16, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"})
	defer stop()
	mqtttest.Eventually(t, 30*time.Second, func() bool { return codeCount(codes, packet.ConnectionRateExceeded) >= 64 },
		"the flood's addresses to be throttled")
	for i := range 3 {
		if code := mustConnectCode(t, addr, packet.V5, fmt.Sprint("h", i), "honest", "pw"); code != packet.Success {
			t.Fatalf("honest client during the flood: CONNACK %v, want success", code)
		}
	}
	if n := codeCount(codes, packet.ConnectionRateExceeded); n < 64 {
		t.Fatalf("flood stopped early (%d throttled)", n)
	}
	if st := s.Stats(); st.Checks > 4*5+3 {
		t.Fatalf("the flood got %d hash checks, want at most 4 addresses x address_failures 5; stats %+v", st.Checks-3, st)
	}
}
