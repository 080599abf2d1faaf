// Command failover measures the write pause of a Petrel cluster after a
// node stops: it checks that every survivor accepts a CONNECT, sends the
// signal to the node's process, then polls each survivor with CONNECTs
// (a new connection and client id each, started every -interval, several
// in flight while the broker holds a claim) until the process is gone
// and, -after later, every survivor has accepted a CONNECT sent after
// its exit. A clustered CONNECT claims its session in the replicated
// PETREL_OWNERS bucket, so accepted CONNECTs are accepted writes.
// bench/cluster.sh runs it.
//
//	go run ./bench/failover -pid 1234 -signal KILL -addrs 127.0.0.1:18842,127.0.0.1:18843
//
// It prints one JSON object: per survivor the write pause (the longest a
// client that starts trying at any moment after the signal waits for an
// accepted CONNECT, retrying at once: after SIGKILL, the signal to the
// first CONNACK 0; after SIGTERM, the handover's gap while the node shuts
// down), the first accepted CONNECT, the attempts made and the refusals
// and errors seen. Only loopback addresses are accepted;
// the run stops by itself after -timeout.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// maxInFlight bounds the CONNECTs waiting for their CONNACK per survivor.
const maxInFlight = 64

type survivor struct {
	Addr string `json:"addr"`
	// PauseS is the write pause: the longest a client that starts
	// trying at some moment after the signal, and tries again at once on
	// a refusal, waits for its CONNACK 0 (over every moment a CONNECT was
	// sent, until the next accepted CONNECT sent at or after it
	// arrives); -1: none accepted.
	PauseS float64 `json:"pause_s"`
	// PauseFromS is when that moment was, after the signal.
	PauseFromS float64 `json:"pause_from_s"`
	// FirstS is when the first CONNECT sent after the signal was
	// accepted; -1: none.
	FirstS float64 `json:"first_ok_s"`
	// SlowestS is the longest an accepted CONNECT waited for its CONNACK.
	SlowestS float64        `json:"slowest_ok_s"`
	Attempts int            `json:"attempts"` // CONNECTs sent after the signal
	Accepted int            `json:"accepted"`
	Refused  map[string]int `json:"refused"` // by CONNACK reason code
	// Errors counts connections that failed without a CONNACK.
	Errors    int    `json:"errors"`
	LastError string `json:"last_error,omitempty"`

	mu       sync.Mutex
	attempts []attempt
}

// attempt is one CONNECT: when it was sent and when it ended, seconds
// after the signal.
type attempt struct {
	sent, done float64
	ok         bool
}

type result struct {
	Signal string    `json:"signal"`
	PID    int       `json:"pid"`
	At     time.Time `json:"at"`
	// ExitS is when the process was seen gone (or a zombie), after the
	// signal; -1: still running at the end.
	ExitS     float64     `json:"exit_s"`
	Survivors []*survivor `json:"survivors"`
}

func main() {
	addrs := flag.String("addrs", "", "survivors' MQTT addresses, comma-separated (loopback only)")
	pid := flag.Int("pid", 0, "the process to signal")
	sig := flag.String("signal", "KILL", "KILL or TERM")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between CONNECTs to one survivor")
	attemptTimeout := flag.Duration("attempt-timeout", 10*time.Second, "how long one CONNECT waits for its CONNACK")
	after := flag.Duration("after", 5*time.Second, "keep polling this long after the process is gone and a CONNECT was accepted on every survivor")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*addrs, *pid, *sig, *interval, *attemptTimeout, *after, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func run(addrList string, pid int, sigName string, interval, attemptTimeout, after, timeout time.Duration) error {
	var s syscall.Signal
	switch sigName {
	case "KILL":
		s = syscall.SIGKILL
	case "TERM":
		s = syscall.SIGTERM
	default:
		return fmt.Errorf("signal %q: want KILL or TERM", sigName)
	}
	if pid <= 1 {
		return errors.New("-pid is required")
	}
	if interval <= 0 || attemptTimeout <= 0 || after < 0 || timeout <= 0 || timeout > 10*time.Minute {
		return errors.New("-interval, -attempt-timeout and -timeout must be positive (timeout at most 10m), -after not negative")
	}
	res := &result{Signal: sigName, PID: pid, ExitS: -1}
	for _, a := range strings.Split(addrList, ",") {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: loopback addresses only", a)
		}
		res.Survivors = append(res.Survivors, &survivor{Addr: a, PauseS: -1, FirstS: -1, Refused: map[string]int{}})
	}
	if len(res.Survivors) == 0 {
		return errors.New("-addrs is required")
	}
	// Every survivor takes a CONNECT before the signal: the pause
	// measured is the signal's, not one already under way.
	for i, sv := range res.Survivors {
		if code, err := connect(sv.Addr, fmt.Sprintf("fo-%d-check-%d", os.Getpid(), i), attemptTimeout); err != nil || code != 0 {
			return fmt.Errorf("%s before the signal: CONNACK 0x%02X, %v", sv.Addr, code, err)
		}
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	at := time.Now()
	if err := proc.Signal(s); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	res.At = at
	end := at.Add(timeout)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, sv := range res.Survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sv.poll(i, at, end, stop, interval, attemptTimeout)
		}()
	}
	// Stop once the process is gone and, -after later, every survivor
	// has accepted a CONNECT sent after its exit.
	for time.Now().Before(end) {
		since := time.Since(at).Seconds()
		if res.ExitS < 0 && gone(pid) {
			res.ExitS = since
		}
		if res.ExitS >= 0 && since >= res.ExitS+after.Seconds() && allAccepted(res.Survivors, res.ExitS) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for _, sv := range res.Survivors {
		sv.summarize()
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// gone reports whether process pid has exited: no /proc entry, or a
// zombie its parent has not waited for yet.
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// allAccepted reports whether every survivor accepted a CONNECT sent
// after from.
func allAccepted(svs []*survivor, from float64) bool {
	for _, sv := range svs {
		sv.mu.Lock()
		ok := false
		for _, a := range sv.attempts {
			ok = ok || (a.ok && a.sent >= from)
		}
		sv.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// summarize computes the survivor's figures from its attempts.
func (sv *survivor) summarize() {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	a := sv.attempts
	sort.Slice(a, func(i, j int) bool { return a[i].sent < a[j].sent })
	sv.Attempts = len(a)
	next := math.Inf(1) // earliest end of an accepted CONNECT sent at or after a[i]
	for i := len(a) - 1; i >= 0; i-- {
		if a[i].ok {
			sv.Accepted++
			next = math.Min(next, a[i].done)
			sv.SlowestS = math.Max(sv.SlowestS, a[i].done-a[i].sent)
			if sv.FirstS < 0 || a[i].done < sv.FirstS {
				sv.FirstS = a[i].done
			}
		}
		if !math.IsInf(next, 1) && next-a[i].sent > sv.PauseS {
			sv.PauseS, sv.PauseFromS = next-a[i].sent, a[i].sent
		}
	}
	// From the signal itself: a client trying at that moment.
	if !math.IsInf(next, 1) && next > sv.PauseS {
		sv.PauseS, sv.PauseFromS = next, 0
	}
}

// poll starts a CONNECT every interval until stop, end, or maxInFlight
// waiting (then it skips the tick); it returns when every CONNECT it
// started has finished.
func (sv *survivor) poll(idx int, at, end time.Time, stop <-chan struct{}, interval, attemptTimeout time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; time.Now().Before(end); n++ {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				sent := time.Since(at).Seconds()
				code, err := connect(sv.Addr, fmt.Sprintf("fo-%d-%d-%d", os.Getpid(), idx, n), min(attemptTimeout, time.Until(end)))
				a := attempt{sent: sent, done: time.Since(at).Seconds(), ok: err == nil && code == 0}
				sv.mu.Lock()
				defer sv.mu.Unlock()
				sv.attempts = append(sv.attempts, a)
				switch {
				case err != nil:
					sv.Errors++
					sv.LastError = err.Error()
				case code != 0:
					sv.Refused[fmt.Sprintf("0x%02X", code)]++
				}
			}()
		default: // maxInFlight waiting: skip this tick
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// connect sends a clean 3.1.1 CONNECT as id and returns the CONNACK's
// return code; on 0 it disconnects (the clean session's record is
// released).
func connect(addr, id string, timeout time.Duration) (byte, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	c := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: true, KeepAlive: 30}
	buf, err := c.Append(nil, packet.V311)
	if err != nil {
		return 0, err
	}
	if _, err := nc.Write(buf); err != nil {
		return 0, err
	}
	p, err := packet.ReadPacket(nc, packet.V311, 0)
	if err != nil {
		return 0, err
	}
	ack, ok := p.(*packet.Connack)
	if !ok {
		return 0, fmt.Errorf("got %s, want CONNACK", p.Type())
	}
	if ack.ReasonCode == packet.Success {
		if buf, err = (&packet.Disconnect{}).Append(buf[:0], packet.V311); err == nil {
			_, _ = nc.Write(buf) // best effort: the close follows
		}
	}
	return byte(ack.ReasonCode), nil
}
