package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mosquittoTimeout bounds each mosquitto_pub/mosquitto_sub run.
const mosquittoTimeout = 20 * time.Second

// mosquittoTools returns the paths of mosquitto_pub and mosquitto_sub. When
// they are missing the test fails under CI=true and is skipped otherwise.
func mosquittoTools(t *testing.T) (pub, sub string) {
	t.Helper()
	pub, errPub := exec.LookPath("mosquitto_pub")
	sub, errSub := exec.LookPath("mosquitto_sub")
	if errPub == nil && errSub == nil {
		return pub, sub
	}
	const msg = "mosquitto_pub/mosquitto_sub not on PATH: install them with `apt-get install mosquitto-clients` (./test.sh does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

func hostPort(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("broker address %q: %v", addr, err)
	}
	return host, port
}

// subProcess is a running mosquitto_sub.
type subProcess struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done is closed
}

// startSub starts mosquitto_sub with args against addr; it is killed when
// the test ends if still running.
func startSub(t *testing.T, ctx context.Context, addr string, args ...string) *subProcess {
	t.Helper()
	_, subPath := mosquittoTools(t)
	host, port := hostPort(t, addr)
	p := &subProcess{done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, subPath, append([]string{"-h", host, "-p", port}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto_sub: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill() // the test ended first; its outcome is decided
			<-p.done
		}
	})
	return p
}

// wait waits for mosquitto_sub to exit and returns its output lines,
// failing the test if it fails or outlives mosquittoTimeout.
func (p *subProcess) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("mosquitto_sub %q: %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, p.err, p.stdout.String(), p.stderr.String())
		}
	case <-time.After(mosquittoTimeout):
		t.Fatalf("mosquitto_sub %q still running after %v\nstdout:\n%s", p.cmd.Args, mosquittoTimeout, p.stdout.String())
	}
	return strings.Split(strings.TrimSuffix(p.stdout.String(), "\n"), "\n")
}

// runPub runs mosquitto_pub with args against addr, sending stdin (with -l,
// one message per line), and fails the test if it fails.
func runPub(t *testing.T, ctx context.Context, addr, stdin string, args ...string) {
	t.Helper()
	pubPath, _ := mosquittoTools(t)
	host, port := hostPort(t, addr)
	cmd := exec.CommandContext(ctx, pubPath, append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %q: %v\n%s", cmd.Args, err, out)
	}
}

func TestMosquittoPubSub(t *testing.T) {
	t.Parallel()
	mosquittoTools(t)
	b, addr := startBroker(t)
	for _, version := range []string{"mqttv31", "mqttv311", "5"} {
		for qos := range 3 {
			t.Run(fmt.Sprintf("%s/qos%d", version, qos), func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
				defer cancel()
				// 3.1 client ids are at most 23 characters.
				subID := fmt.Sprintf("msub-%s-%d", version, qos)
				topic := fmt.Sprintf("mosq/%s/q%d/data", version, qos)
				msgs := []string{"first", "second message", "third"}
				q := fmt.Sprint(qos)
				sub := startSub(t, ctx, addr, "-V", version, "-i", subID, "-q", q,
					"-t", "mosq/"+version+"/q"+q+"/#", "-C", fmt.Sprint(len(msgs)), "-v", "-W", "10")
				waitSubscribed(t, b, subID, 1)
				runPub(t, ctx, addr, strings.Join(msgs, "\n")+"\n", "-V", version,
					"-i", fmt.Sprintf("mpub-%s-%d", version, qos), "-q", q, "-t", topic, "-l")
				var want []string
				for _, m := range msgs {
					want = append(want, topic+" "+m)
				}
				if got := sub.wait(t); !slices.Equal(got, want) {
					t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
				}
			})
		}
	}
}

func TestMosquittoRetained(t *testing.T) {
	t.Parallel()
	mosquittoTools(t)
	_, addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	defer cancel()
	runPub(t, ctx, addr, "", "-i", "mret-pub", "-q", "1", "-r", "-t", "mret/lamp", "-m", "on")
	// %r prints the retain flag: set on a retained message sent to a new
	// subscription [MQTT-3.3.1-8].
	sub := startSub(t, ctx, addr, "-i", "mret-sub", "-q", "1", "-t", "mret/#",
		"-C", "1", "-F", "%r %q %t %p", "-W", "10")
	if got, want := sub.wait(t), []string{"1 1 mret/lamp on"}; !slices.Equal(got, want) {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
	}
}

func TestMosquittoWillOnKill(t *testing.T) {
	t.Parallel()
	mosquittoTools(t)
	b, addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	defer cancel()

	observer := startSub(t, ctx, addr, "-i", "mwill-obs", "-q", "1", "-t", "mwill/#", "-C", "1", "-v", "-W", "10")
	waitSubscribed(t, b, "mwill-obs", 1)
	dying := startSub(t, ctx, addr, "-i", "mwill-dying", "-t", "mwill-dying/cmd",
		"--will-topic", "mwill/dying", "--will-payload", "offline", "--will-qos", "1")
	waitSubscribed(t, b, "mwill-dying", 1)
	// SIGKILL: the client sends no DISCONNECT; the kernel closes its
	// socket, and the broker publishes the will [MQTT-3.1.2-8].
	if err := dying.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill mosquitto_sub: %v", err)
	}
	if got, want := observer.wait(t), []string{"mwill/dying offline"}; !slices.Equal(got, want) {
		t.Fatalf("observer printed %q, want %q", got, want)
	}
}
