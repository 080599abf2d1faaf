//go:build linux && !386

package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a raw connection accepted by an Accepter on a fresh
// listener and the client's end.
func pair(t *testing.T) (*conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	a := Of(ln)
	if a == nil {
		t.Fatal("Of(*net.TCPListener) = nil on Linux")
	}
	t.Cleanup(func() { _ = a.Close() })
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	nc, err := a.AcceptRaw()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := nc.(*conn)
	if !ok {
		t.Fatalf("AcceptRaw returned %T, want *conn", nc)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, cl
}

func fdOpen(fd int) bool {
	_, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	return e == 0
}

func sockopt(t *testing.T, c *conn, level, opt int) int {
	t.Helper()
	var v int
	var serr error
	if err := c.rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

type owner struct {
	mu       sync.Mutex
	old, new int
	calls    int
	oldOpen  bool
}

func (o *owner) fdMoved(old, new int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.old, o.new, o.oldOpen = old, new, fdOpen(old)
	o.calls++
}

func TestAcceptRawAddressesAndNoDelay(t *testing.T) {
	c, cl := pair(t)
	if got, want := c.RemoteAddr().String(), cl.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want the client's %s", got, want)
	}
	if got, want := c.LocalAddr().String(), cl.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	if sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) == 0 {
		t.Error("TCP_NODELAY is off on an accepted connection")
	}
	if c.p.Load() != nil {
		t.Error("a fresh connection is promoted")
	}
}

func TestReadWriteRawWhileDataWaits(t *testing.T) {
	c, cl := pair(t)
	if _, err := cl.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	deadline := time.Now().Add(5 * time.Second)
	var n int
	for n < 4 && time.Now().Before(deadline) {
		// Wait for the bytes to be there, without promoting.
		var avail bool
		_ = c.rc.Control(func(fd uintptr) {
			m, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(0), 0, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			avail = e == 0 || m > 0
		})
		if avail {
			break
		}
		time.Sleep(time.Millisecond)
	}
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v; want ping", buf[:n], err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cl, buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:4], err)
	}
	if c.p.Load() != nil {
		t.Error("reads and writes that did not wait promoted the connection")
	}
}

// A read that has to wait promotes the connection once: the owner is
// told of the new descriptor while the old one is still open, the old one
// is closed after, and the deadline set while raw applies to the wait.
func TestPromoteOnWait(t *testing.T) {
	c, cl := pair(t)
	var o owner
	c.setOwner(&o)
	oldFD := c.fd
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read with nothing sent = %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("timed out after %v, before the 50 ms deadline", d)
	}
	if c.p.Load() == nil {
		t.Fatal("not promoted")
	}
	o.mu.Lock()
	if o.calls != 1 || o.old != oldFD || o.new == oldFD || !o.oldOpen {
		t.Errorf("fdMoved calls=%d old=%d (want %d) new=%d, old open during the call: %v", o.calls, o.old, oldFD, o.new, o.oldOpen)
	}
	newFD := o.new
	o.mu.Unlock()
	if fdOpen(oldFD) && oldFD != newFD {
		t.Errorf("old descriptor %d still open after promotion", oldFD)
	}
	// The promoted connection works: a read waits for the client's bytes.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = cl.Write([]byte("late"))
	}()
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read after promotion = %q, %v", buf[:n], err)
	}
	var fd int
	_ = c.rc.Control(func(f uintptr) { fd = int(f) })
	if fd != newFD {
		t.Errorf("Control gives descriptor %d after promotion, want %d", fd, newFD)
	}
	o.mu.Lock()
	if o.calls != 1 {
		t.Errorf("fdMoved called %d times: promoted again", o.calls)
	}
	o.mu.Unlock()
}

// An expired read deadline fails a raw read at once, even with bytes
// waiting, as the netpoller's does; no promotion for it.
func TestExpiredDeadlineRaw(t *testing.T) {
	c, cl := pair(t)
	if _, err := cl.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	called := false
	err := c.rc.Read(func(uintptr) bool { called = true; return true })
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || called {
		t.Fatalf("Read past the deadline = %v (f called: %v), want a timeout before f", err, called)
	}
	if c.p.Load() != nil {
		t.Error("an expired deadline promoted the connection")
	}
}

// Close never closes the descriptor under a raw operation: the number
// could be reused by the next accept while the operation uses it.
func TestCloseWaitsForRawOperation(t *testing.T) {
	c, _ := pair(t)
	released := 0
	c.SetRelease(func() { released++ })
	fd := c.fd
	var inside bool
	err := c.rc.Control(func(uintptr) {
		done := make(chan error)
		go func() { done <- c.Close() }()
		if err := <-done; err != nil {
			t.Errorf("Close: %v", err)
		}
		inside = fdOpen(fd)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Error("Close closed the descriptor while a raw operation used it")
	}
	if fdOpen(fd) {
		t.Error("descriptor still open after the last operation on a closed connection")
	}
	if released != 1 {
		t.Errorf("release called %d times, want 1", released)
	}
	if err := c.rc.Control(func(uintptr) { t.Error("Control ran on a closed connection") }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Control after Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if released != 1 {
		t.Errorf("release called %d times after a second Close, want 1", released)
	}
}

// Closing from another goroutine ends a promoted connection's wait.
func TestCloseEndsPromotedWait(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	for c.p.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the promoted Read")
	}
}

// Promotion keeps the connection's TCP keepalive setting (net.FileConn
// would turn it on).
func TestPromotionKeepsKeepAlive(t *testing.T) {
	for _, on := range []bool{false, true} {
		c, _ := pair(t)
		if on {
			if err := c.SetKeepAlive(true); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, _ = c.Read(make([]byte, 1)) // waits: promotes
		if c.p.Load() == nil {
			t.Fatal("not promoted")
		}
		if got := sockopt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0; got != on {
			t.Errorf("keepalive %v after promotion, want %v", got, on)
		}
	}
}

// A write to a full socket promotes and then waits for room.
func TestWriteWaitsForRoom(t *testing.T) {
	c, cl := pair(t)
	payload := make([]byte, 8<<20) // more than the socket buffers hold
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if c.p.Load() == nil {
		t.Error("a write to a full socket did not promote")
	}
	if _, err := io.CopyN(io.Discard, cl, int64(len(payload))); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAccepterClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := Of(ln)
	errc := make(chan error, 1)
	go func() {
		_, err := a.AcceptRaw()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("AcceptRaw after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not end AcceptRaw")
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// A listener closed by someone else ends AcceptRaw within closedCheck.
func TestListenerClosedElsewhere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := Of(ln)
	defer a.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := a.AcceptRaw()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("AcceptRaw = %v, want net.ErrClosed", err)
		}
	case <-time.After(closedCheck + 2*time.Second):
		t.Fatal("AcceptRaw did not notice its listener closed")
	}
}

// Connections waiting in the backlog are all accepted, one after another
// without waiting.
func TestAcceptBacklog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := Of(ln)
	defer a.Close()
	const n = 50
	var clients []net.Conn
	for range n {
		cl, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
	}
	got := 0
	for got < n {
		nc, err := a.AcceptRaw()
		if err != nil {
			t.Fatal(err)
		}
		got++
		_ = nc.Close()
	}
	for _, cl := range clients {
		_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client of a closed connection read %v, want EOF", err)
		}
		_ = cl.Close()
	}
}

func TestOfOthers(t *testing.T) {
	if Of(fakeListener{}) != nil {
		t.Error("Of returned an Accepter for a listener that is neither TCP nor a Source")
	}
	if Of(nilSource{}) != nil {
		t.Error("Of returned an Accepter for a Source without one")
	}
}

type fakeListener struct{}

func (fakeListener) Accept() (net.Conn, error) { return nil, os.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (fakeListener) Addr() net.Addr            { return &net.TCPAddr{} }

type nilSource struct{ fakeListener }

func (nilSource) RawTCP() Accepter { return nil }

// A promotion waits for raw operations under way, and their end does not
// close the descriptor it is about to make a netpoller connection of.
func TestPromotionWaitsForRawOperation(t *testing.T) {
	c, cl := pair(t)
	errc := make(chan error, 1)
	buf := make([]byte, 8)
	var n int
	err := c.rc.Control(func(uintptr) {
		go func() {
			var err error
			n, err = c.Read(buf) // nothing sent yet: promotes, waiting for this Control first
			errc <- err
		}()
		for c.state.Load()&retiredBit == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
		if c.p.Load() != nil {
			t.Error("promoted while a raw operation was under way")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil || string(buf[:n]) != "after" {
			t.Fatalf("Read across the promotion = %q, %v", buf[:n], err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read across the promotion did not return")
	}
}
