// Command failover measures the write pause of a Petrel cluster after a
// node stops: it checks that every survivor accepts a CONNECT, sends the
// signal to the node's process, then polls each survivor with CONNECTs
// (a new connection and client id each, started every -interval, several
// in flight while the broker holds a claim) until one is accepted. A
// clustered CONNECT claims its session in the replicated PETREL_OWNERS
// bucket, so the first accepted CONNECT after the signal is the end of
// the pause for that survivor. bench/cluster.sh runs it.
//
//	go run ./bench/failover -pid 1234 -signal KILL -addrs 127.0.0.1:18842,127.0.0.1:18843
//
// It prints one JSON object: per survivor the pause (signal to the first
// CONNACK 0 of a CONNECT sent after the signal), the attempts made and
// the refusals and errors seen. Only loopback addresses are accepted;
// the run stops by itself after -timeout.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// maxInFlight bounds the CONNECTs waiting for their CONNACK per survivor.
const maxInFlight = 64

type survivor struct {
	Addr      string         `json:"addr"`
	PauseS    float64        `json:"pause_s"`    // signal to the first accepted CONNECT; -1: none within the timeout
	StartedS  float64        `json:"started_s"`  // when that CONNECT was sent, after the signal
	Attempts  int64          `json:"attempts"`   // CONNECTs sent after the signal
	Refused   map[string]int `json:"refused"`    // CONNACK return codes other than 0
	Errors    int64          `json:"errors"`     // connections that failed without a CONNACK
	LastError string         `json:"last_error"` // the last of them

	mu     sync.Mutex
	done   atomic.Bool
	firstS float64
}

type result struct {
	Signal    string      `json:"signal"`
	PID       int         `json:"pid"`
	At        time.Time   `json:"at"`
	Survivors []*survivor `json:"survivors"`
}

func main() {
	addrs := flag.String("addrs", "", "survivors' MQTT addresses, comma-separated (loopback only)")
	pid := flag.Int("pid", 0, "the process to signal")
	sig := flag.String("signal", "KILL", "KILL or TERM")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between CONNECTs to one survivor")
	attemptTimeout := flag.Duration("attempt-timeout", 10*time.Second, "how long one CONNECT waits for its CONNACK")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*addrs, *pid, *sig, *interval, *attemptTimeout, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func run(addrList string, pid int, sigName string, interval, attemptTimeout, timeout time.Duration) error {
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
	if interval <= 0 || attemptTimeout <= 0 || timeout <= 0 || timeout > 10*time.Minute {
		return errors.New("-interval, -attempt-timeout and -timeout must be positive (timeout at most 10m)")
	}
	res := &result{Signal: sigName, PID: pid}
	for _, a := range strings.Split(addrList, ",") {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: loopback addresses only", a)
		}
		res.Survivors = append(res.Survivors, &survivor{Addr: a, PauseS: -1, Refused: map[string]int{}})
	}
	if len(res.Survivors) == 0 {
		return errors.New("-addrs is required")
	}
	// Every survivor takes a CONNECT before the signal: the pause
	// measured is the signal's, not one already under way.
	for i, sv := range res.Survivors {
		if code, err := connect(sv.Addr, fmt.Sprintf("fo-%d-check-%d", os.Getpid(), i), attemptTimeout); err != nil || code != 0 {
			return fmt.Errorf("%s before the signal: CONNACK %d, %v", sv.Addr, code, err)
		}
	}
	at := time.Now()
	if err := syscall.Kill(pid, s); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	res.At = at
	end := at.Add(timeout)
	var wg sync.WaitGroup
	for i, sv := range res.Survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sv.poll(i, at, end, interval, attemptTimeout)
		}()
	}
	wg.Wait()
	for _, sv := range res.Survivors {
		if sv.done.Load() {
			sv.PauseS = sv.firstS
		}
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(res)
}

// poll starts a CONNECT every interval until one is accepted or end
// passes, with at most maxInFlight waiting; it returns when every
// CONNECT it started has finished.
func (sv *survivor) poll(idx int, at, end time.Time, interval, attemptTimeout time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; !sv.done.Load() && time.Now().Before(end); n++ {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				started := time.Since(at).Seconds()
				atomic.AddInt64(&sv.Attempts, 1)
				wait := min(attemptTimeout, time.Until(end))
				code, err := connect(sv.Addr, fmt.Sprintf("fo-%d-%d-%d", os.Getpid(), idx, n), wait)
				took := time.Since(at).Seconds()
				sv.mu.Lock()
				defer sv.mu.Unlock()
				switch {
				case err != nil:
					sv.Errors++
					sv.LastError = err.Error()
				case code != 0:
					sv.Refused[fmt.Sprint(code)]++
				case !sv.done.Load() || took < sv.firstS:
					sv.firstS, sv.StartedS = took, started
					sv.done.Store(true)
				}
			}()
		default: // maxInFlight waiting: skip this tick
		}
		<-tick.C
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
