package auth

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// startAuthBroker starts a broker on 127.0.0.1:0 authenticating with a
// Service built from c (clock now, nil: time.Now), and returns both.
func startAuthBroker(t *testing.T, c Config, now func() time.Time) (*Service, string) {
	t.Helper()
	return startAuthBrokerWith(t, c, now, broker.Options{})
}

// startAuthBrokerWith is startAuthBroker with broker options o.
func startAuthBrokerWith(t *testing.T, c Config, now func() time.Time, o broker.Options) (*Service, string) {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	s, err := New(c, Options{Logger: quietLogger(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	o.Authenticator, o.Authorizer = s, s
	_, addr := mqtttest.StartBroker(t, o)
	return s, addr
}

// connectCode dials addr, sends a CONNECT with the credentials and returns
// the CONNACK's code. It reports errors instead of failing the test, so
// flood goroutines can use it.
func connectCode(addr string, v packet.Version, id, user, pass string) (packet.ReasonCode, error) {
	return connectCodeFrom("", addr, v, id, user, pass)
}

// connectCodeFrom is connectCode from the local IP address from ("":
// any).
func connectCodeFrom(from, addr string, v packet.Version, id, user, pass string) (packet.ReasonCode, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	p := &packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: id, CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)}
	buf, err := p.Append(nil, v)
	if err != nil {
		return 0, err
	}
	if _, err := nc.Write(buf); err != nil {
		return 0, err
	}
	if err := nc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		return 0, err
	}
	pk, err := packet.ReadPacket(nc, v, 0)
	if err != nil {
		return 0, err
	}
	ack, ok := pk.(*packet.Connack)
	if !ok {
		return 0, fmt.Errorf("got %s, want CONNACK", pk.Type())
	}
	return ack.ReasonCode, nil
}

func mustConnectCode(t *testing.T, addr string, v packet.Version, id, user, pass string) packet.ReasonCode {
	t.Helper()
	code, err := connectCode(addr, v, id, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestPasswordCheckBusyRefused: with every check slot taken, a CONNECT
// waits for one at most max_wait, then is refused with CONNACK 0x89
// server busy (5.0) or return code 3 server unavailable (3.1.1), and the
// connection is closed [MQTT-3.2.2-7] [MQTT-3.2.2-5]; the refusals are
// counted. A CONNECT that finds a slot within the wait is served.
func TestPasswordCheckBusyRefused(t *testing.T) {
	uf := writeUsers(t, fmt.Sprintf("  - {username: dev, password: '%s', tenant: A}\n", bcryptHash(t, "pw", 4)))
	s, addr := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxConcurrent: 1, MaxWait: 200 * time.Millisecond}}, nil)
	ctx := context.Background()
	// A check that runs: it holds the only slot.
	if err := s.checks.slots.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}

	c5 := mqtttest.Dial(t, addr, packet.V5)
	ack := c5.Connect(&packet.Connect{ClientID: "d5", CleanStart: true, UsernameFlag: true, Username: "dev", PasswordFlag: true, Password: []byte("pw")})
	if ack.ReasonCode != packet.ServerBusy {
		t.Fatalf("5.0: CONNACK %v, want 0x89 server busy", ack.ReasonCode)
	}
	c5.ExpectClosed() // [MQTT-3.2.2-7]

	c3 := mqtttest.Dial(t, addr, packet.V311)
	c3.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "d3", CleanStart: true,
		UsernameFlag: true, Username: "dev", PasswordFlag: true, Password: []byte("pw")})
	raw := make([]byte, 4)
	if err := c3.Conn.SetReadDeadline(time.Now().Add(mqtttest.Timeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c3.Conn, raw); err != nil {
		t.Fatal(err)
	}
	if raw[0] != 0x20 || raw[1] != 2 || raw[3] != 3 {
		t.Fatalf("3.1.1: CONNACK bytes % x, want return code 3 server unavailable", raw)
	}
	c3.ExpectClosed() // [MQTT-3.2.2-5]
	if st := s.Stats(); st.Busy != 2 || st.Checks != 0 {
		t.Fatalf("stats %+v, want 2 busy refusals and no hash computed", st)
	}

	// A CONNECT waiting for the slot gets it when the running check ends.
	s2, addr2 := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxConcurrent: 1, MaxWait: time.Minute}}, nil)
	if err := s2.checks.slots.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got := make(chan packet.ReasonCode, 1)
	go func() {
		code, err := connectCode(addr2, packet.V5, "w", "dev", "pw")
		if err != nil {
			t.Error(err)
		}
		got <- code
	}()
	mqtttest.Eventually(t, mqtttest.Timeout, func() bool { return s2.Stats().Waiting == 1 }, "the CONNECT to wait for a slot")
	s2.checks.slots.Release(1)
	if code := <-got; code != packet.Success {
		t.Fatalf("after waiting: CONNACK %v, want success", code)
	}
}

// TestHonestClientDuringWrongPasswordFlood: 32 connections keep sending
// wrong passwords for one user from one address. The victim's name is
// refused with 0x9F before hashing once its failures reach the limit, so
// the flood gets at most user_failures hash checks; a client of another
// user from the same address (where it authenticated before) gets
// CONNACK 0 while the flood runs.
func TestHonestClientDuringWrongPasswordFlood(t *testing.T) {
	hash := bcryptHash(t, "pw", 4)
	uf := writeUsers(t,
		fmt.Sprintf("  - {username: victim, password: '%s', tenant: A}\n", hash),
		fmt.Sprintf("  - {username: honest, password: '%s', tenant: B}\n", hash))
	s, addr := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{MaxConcurrent: 1, MaxWait: time.Minute,
		UserFailures: 5, AddressFailures: 20, FailureWindow: time.Hour}}, nil)
	if code := mustConnectCode(t, addr, packet.V5, "h0", "honest", "pw"); code != packet.Success {
		t.Fatalf("honest before the flood: %v", code)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad, throttled atomic.Int64
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				code, err := connectCode(addr, packet.V5, fmt.Sprintf("f%d-%d", i, n), "victim", "guess")
				switch {
				case err != nil:
					t.Error(err)
					return
				case code == packet.BadUsernameOrPassword:
					bad.Add(1)
				case code == packet.ConnectionRateExceeded:
					throttled.Add(1)
				default:
					t.Errorf("flood: CONNACK %v", code)
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	mqtttest.Eventually(t, 30*time.Second, func() bool { return throttled.Load() >= 64 }, "the flood to be throttled")
	for i := range 3 {
		if code := mustConnectCode(t, addr, packet.V5, fmt.Sprint("h", i+1), "honest", "pw"); code != packet.Success {
			t.Fatalf("honest client during the flood: CONNACK %v, want success", code)
		}
	}
	if n := throttled.Load(); n < 64 {
		t.Fatalf("flood stopped early (%d throttled)", n)
	}
	st := s.Stats()
	if bad.Load() > 5 || st.Checks > 5+4 {
		t.Fatalf("the flood got %d hash checks (0x86 answers %d), want at most user_failures 5; stats %+v", st.Checks-4, bad.Load(), st)
	}
	t.Logf("flood: %d refused after a hash (0x86), %d before hashing (0x9F); stats %+v", bad.Load(), throttled.Load(), st)
}

// TestRepeatedFailuresSlowed: over real connections, a username's
// failures past user_failures and an address's past address_failures are
// refused with 0x9F (3.1.1: 3) without a hash; one failure is forgiven
// per failure_window/limit.
func TestRepeatedFailuresSlowed(t *testing.T) {
	hash := bcryptHash(t, "pw", 4)
	var users []string
	for _, u := range []string{"target", "u1", "u2", "u3", "u4", "u5", "u6"} {
		users = append(users, fmt.Sprintf("  - {username: %s, password: '%s', tenant: A}\n", u, hash))
	}
	clk := newClock()
	s, addr := startAuthBroker(t, Config{UsersFile: writeUsers(t, users...), Checks: PasswordChecks{
		UserFailures: 2, AddressFailures: 4, FailureWindow: 20 * time.Second}}, clk.now)

	// Per username.
	for i := range 2 {
		if code := mustConnectCode(t, addr, packet.V5, "t", "target", "guess"); code != packet.BadUsernameOrPassword {
			t.Fatalf("guess %d: %v", i, code)
		}
	}
	checks := s.Stats().Checks
	if code := mustConnectCode(t, addr, packet.V5, "t", "target", "pw"); code != packet.ConnectionRateExceeded {
		t.Fatalf("third try for the name: CONNACK %v, want 0x9F", code)
	}
	if code := mustConnectCode(t, addr, packet.V311, "t", "target", "pw"); code != packet.ServerUnavailable {
		t.Fatalf("3.1.1: CONNACK %v, want 3 server unavailable", code)
	}
	if st := s.Stats(); st.Checks != checks || st.ThrottledName != 2 {
		t.Fatalf("throttled tries hashed or went uncounted: %+v", st)
	}
	clk.advance(10 * time.Second) // one failure forgiven
	if code := mustConnectCode(t, addr, packet.V5, "t", "target", "pw"); code != packet.Success {
		t.Fatalf("after the window: CONNACK %v, want success", code)
	}

	// Per address: the 10s gave the address its four failures back
	// (4 per 20s); four other names spend them, then a fifth name is
	// refused, right password or not.
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		if code := mustConnectCode(t, addr, packet.V5, u, u, "guess"); code != packet.BadUsernameOrPassword {
			t.Fatalf("%s: %v", u, code)
		}
	}
	if code := mustConnectCode(t, addr, packet.V5, "u5", "u5", "pw"); code != packet.ConnectionRateExceeded {
		t.Fatalf("a new name from a spent address: CONNACK %v, want 0x9F", code)
	}
	if st := s.Stats(); st.ThrottledAddress != 1 {
		t.Fatalf("address refusal not counted: %+v", st)
	}
	// target authenticated from here: its own limit, not the address's.
	if code := mustConnectCode(t, addr, packet.V5, "t", "target", "pw"); code != packet.Success {
		t.Fatalf("known pair refused for the address's failures: %v", code)
	}
	// Unknown names count against the address the same way.
	if code := mustConnectCode(t, addr, packet.V5, "x", "nobody", "pw"); code != packet.ConnectionRateExceeded {
		t.Fatalf("unknown name from a spent address: %v, want 0x9F", code)
	}
}

// TestUnknownUserCostsAHashCheck: a username that does not exist, or
// exists without a password hash, is checked against the dummy hash (of
// the users file's cost) before the refusal with 0x86; the time ratio of
// the two refusals is logged, not asserted.
func TestUnknownUserCostsAHashCheck(t *testing.T) {
	hash := bcryptHash(t, "pw", 8)
	uf := writeUsers(t,
		fmt.Sprintf("  - {username: known, password: '%s', tenant: A}\n", hash),
		"  - {username: certonly, tenant: A}\n")
	s, addr := startAuthBroker(t, Config{UsersFile: uf, Checks: PasswordChecks{UserFailures: 100, AddressFailures: 100}}, nil)
	if got, want := dummyCost([]string{s.cur.Load().dummy}), dummyCost([]string{hash}); got != want {
		t.Fatalf("dummy cost %+v, users file's %+v", got, want)
	}
	timeOf := func(user string) time.Duration {
		t.Helper()
		before := s.Stats()
		start := time.Now()
		if code := mustConnectCode(t, addr, packet.V5, "c", user, "guess"); code != packet.BadUsernameOrPassword {
			t.Fatalf("%s: CONNACK %v, want 0x86", user, code)
		}
		d := time.Since(start)
		st := s.Stats()
		if st.Checks != before.Checks+1 {
			t.Fatalf("%s: %d hash checks, want 1", user, st.Checks-before.Checks)
		}
		if wantDummy := user != "known"; (st.Dummy == before.Dummy+1) != wantDummy {
			t.Fatalf("%s: dummy checks %d -> %d", user, before.Dummy, st.Dummy)
		}
		return d
	}
	var known, unknown time.Duration
	for range 3 {
		known += timeOf("known")
		unknown += timeOf("nobody")
		timeOf("certonly")
	}
	t.Logf("wrong password for a known user %v, unknown user %v (ratio %.2f)", known/3, unknown/3, float64(unknown)/float64(known))
}
