package broker_test

// Benchmarks behind BENCHMARKS.md "Durability and memory": start-up time
// with 1M queued messages on disk, and the memory of 100k offline
// persistent sessions. Each one builds its data set first (not timed), so
// run them with a fixed iteration count, for example
//
//	go test ./broker -run '^$' -bench Restart1M -benchtime 3x -timeout 10m
//	go test ./broker -run '^$' -bench OfflineSessions -benchtime 1x -count 3 -timeout 10m
//
// Go runs no benchmark under plain go test.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
	"github.com/petrel-mqtt/petrel/packet"
)

// measureLogger drops everything below error.
func measureLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// memSnapshot is the process's memory and goroutines after a full GC with
// the freed pages returned to the OS.
type memSnapshot struct {
	rss, heap  uint64 // VmRSS, HeapAlloc (live heap objects)
	heapInuse  uint64 // HeapInuse (spans with objects, fragmentation included)
	goroutines int
}

func snapshot(b testing.TB) memSnapshot {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{rss: vmRSS(b), heap: ms.HeapAlloc, heapInuse: ms.HeapInuse, goroutines: runtime.NumGoroutine()}
}

// vmRSS reads VmRSS of this process from /proc/self/status.
func vmRSS(b testing.TB) uint64 { return procStatus(b, "VmRSS") }

// procStatus reads a size field (VmRSS, VmHWM) of /proc/self/status.
func procStatus(b testing.TB, field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s %q: %v", field, rest, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeakRSS sets VmHWM to the current VmRSS (Linux: clear_refs 5).
func resetPeakRSS(b testing.TB) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// waitGoroutines waits until the goroutine count is at most want or has
// stopped changing for 200 ms (5 s at most), and returns it.
func waitGoroutines(want int) int {
	last, since := runtime.NumGoroutine(), time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n := runtime.NumGoroutine()
		if n <= want {
			return n
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 200*time.Millisecond {
			return n
		}
	}
	return runtime.NumGoroutine()
}

const mib = 1 << 20

// BenchmarkRestart1M measures a broker start-up on a disk store holding
// 1,000,000 queued QoS 1 messages: 20 persistent 3.1.1 sessions × 50,000
// messages of 100 B, written through Store.Commit (5,000 operations per
// batch, sync none; not timed). Each iteration opens the store and runs
// broker.New, which loads and restores everything; it reports the median
// over the iterations of:
//
//   - open-s: diskstore.Open; load-s: Store.Load alone, to a Restorer that
//     only counts (a separate open, Load, Close before the timed start);
//   - start-s: Open + broker.New, the broker's start-up (Load streams each
//     record into the broker's state, so the two are not separable);
//   - heap-MB, rss-MB: live Go heap (HeapAlloc) and VmRSS after the start-up minus
//     before (after a GC and debug.FreeOSMemory);
//   - peak-MB: the peak RSS during the start-up (VmHWM, reset before it)
//     minus VmRSS before;
//   - goroutines: the count after minus before.
//
// The data is on a warm page cache (it was just written). With
// PETREL_MEASURE_DIR set, the data set is written there (when the directory
// has no store yet) and kept, for bench/durability.sh to start petrel serve
// on it.
func BenchmarkRestart1M(b *testing.B) {
	const sessions, perSession, size = 20, 50_000, 100
	dir := os.Getenv("PETREL_MEASURE_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "pebble")); err != nil {
		start := time.Now()
		fillQueues(b, dir, sessions, perSession, size)
		b.Logf("wrote %d sessions × %d messages of %d B in %v", sessions, perSession, size, time.Since(start).Round(time.Millisecond))
	}
	logger := measureLogger()
	var opens, loads, starts, heaps, rsss, peaks, gs []float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// Load alone, for the breakdown.
		st, err := diskstore.Open(dir, diskstore.Options{Logger: logger})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var count countingRestorer
		if err := st.Load(context.Background(), &count); err != nil {
			b.Fatal(err)
		}
		load := time.Since(t1)
		if count.deliveries != sessions*perSession {
			b.Fatalf("Load reported %d deliveries, want %d", count.deliveries, sessions*perSession)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		before := snapshot(b)
		resetPeakRSS(b)
		b.StartTimer()

		start := time.Now()
		st, err = diskstore.Open(dir, diskstore.Options{Logger: logger})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(start)
		br, err := broker.New(broker.Options{Store: st, Logger: logger})
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)

		b.StopTimer()
		peak := procStatus(b, "VmHWM")
		queued := 0
		for c := range sessions {
			cs, ok := br.ClientStats(fmt.Sprintf("client-%02d", c))
			if !ok {
				b.Fatalf("session client-%02d not restored", c)
			}
			queued += cs.Queued + cs.Inflight
		}
		if queued != sessions*perSession {
			b.Fatalf("restored %d queued messages, want %d", queued, sessions*perSession)
		}
		after := snapshot(b)
		opens = append(opens, opened.Seconds())
		loads = append(loads, load.Seconds())
		starts = append(starts, elapsed.Seconds())
		heaps = append(heaps, (float64(after.heap)-float64(before.heap))/mib)
		rsss = append(rsss, (float64(after.rss)-float64(before.rss))/mib)
		peaks = append(peaks, (float64(peak)-float64(before.rss))/mib)
		gs = append(gs, float64(after.goroutines-before.goroutines))
		shutdown(b, br)
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(median(opens), "open-s")
	b.ReportMetric(median(loads), "load-s")
	b.ReportMetric(median(starts), "start-s")
	b.ReportMetric(median(heaps), "heap-MB")
	b.ReportMetric(median(rsss), "rss-MB")
	b.ReportMetric(median(peaks), "peak-MB")
	b.ReportMetric(median(gs), "goroutines")
	b.Logf("start-s per run %.2f", starts)
}

// countingRestorer counts what Store.Load reports and keeps nothing.
type countingRestorer struct{ sessions, subs, deliveries, inbound, retained int }

func (c *countingRestorer) RestoreSession(*broker.StoredSession) error { c.sessions++; return nil }
func (c *countingRestorer) RestoreSubscription(string, *broker.StoredSubscription) error {
	c.subs++
	return nil
}
func (c *countingRestorer) RestoreDelivery(string, *broker.StoredDelivery) error {
	c.deliveries++
	return nil
}
func (c *countingRestorer) RestoreInbound(string, uint16, uint64) error { c.inbound++; return nil }
func (c *countingRestorer) RestoreRetained(*broker.StoredMessage) error { c.retained++; return nil }

// fillQueues writes sessions persistent 3.1.1 sessions client-NN, each
// subscribed to devices/client-NN/# at QoS 1 with perSession queued QoS 1
// messages of size random bytes.
func fillQueues(b *testing.B, dir string, sessions, perSession, size int) {
	st, err := diskstore.Open(dir, diskstore.Options{Sync: diskstore.SyncNone, Logger: measureLogger()})
	if err != nil {
		b.Fatal(err)
	}
	// Payloads are slices of 1 MiB of random bytes, so that Pebble's block
	// compression does not shrink the data set to nothing.
	rnd := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{}).Read(rnd)
	var batch broker.Batch
	flush := func() {
		if err := st.Commit(&batch, false); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	for c := range sessions {
		id := fmt.Sprintf("client-%02d", c)
		batch.Add(broker.Op{Kind: broker.OpPutSession, ClientID: id, Session: &broker.StoredSession{Version: packet.V311, ExpiryInterval: broker.NoExpiry}})
		batch.Add(broker.Op{Kind: broker.OpPutSubscription, ClientID: id, Sub: &broker.StoredSubscription{Filter: "devices/" + id + "/#", QoS: 1}})
		topic := "devices/" + id + "/telemetry"
		for seq := range perSession {
			off := ((c*perSession + seq) * 7919) % (len(rnd) - size)
			batch.Add(broker.Op{Kind: broker.OpEnqueue, ClientID: id, Delivery: &broker.StoredDelivery{
				Seq: uint64(seq + 1), QoS: 1, Msg: broker.StoredMessage{Topic: topic, Payload: rnd[off : off+size], QoS: 1, Origin: "sensor"},
			}})
			if batch.Len() == 5000 {
				flush()
			}
		}
	}
	flush()
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func shutdown(b *testing.B, br *broker.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := br.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOfflineSessions measures the memory of 100,000 offline
// persistent 3.1.1 sessions, each subscribed to its own topic at QoS 1 and
// holding 10 queued QoS 1 messages of 100 B (1M distinct messages), built
// through the broker over in-process pipes (broker.ServeConn): CONNECT
// clean session 0, SUBSCRIBE, DISCONNECT; then a publisher sends 10
// messages to the session's topic. Variants:
//
//   - memory: no Store;
//   - disk: a diskstore (sync none to build faster; the memory held does
//     not depend on the sync mode), measured while the broker that built
//     the sessions still runs;
//   - disk-restarted: the same store after Shutdown, Close, Open and
//     broker.New, which restores the sessions from disk.
//
// It reports live heap (HeapAlloc) and VmRSS per session and per 100k
// sessions, and the goroutine count, each as "after minus before", where
// before is the broker with its empty store (Pebble's own goroutines and
// memtable counted there) and both are taken after a GC and
// debug.FreeOSMemory. On disk the RSS also holds what Pebble's memtable and
// block cache (up to 16 + 64 MiB) have touched.
// PETREL_MEASURE_HEAPPROF=PATH writes the live heap at the measurement to
// PATH.VARIANT.
func BenchmarkOfflineSessions(b *testing.B) {
	const sessions, perSession, size = 100_000, 10, 100
	for _, variant := range []string{"memory", "disk", "disk-restarted"} {
		b.Run(variant, func(b *testing.B) {
			for range b.N {
				offlineSessions(b, variant, sessions, perSession, size)
			}
		})
	}
}

func offlineSessions(b *testing.B, variant string, sessions, perSession, size int) {
	b.StopTimer()
	logger := measureLogger()
	var st *diskstore.Store
	dir := b.TempDir()
	openStore := func() broker.Options {
		o := broker.Options{Logger: logger}
		if variant != "memory" {
			var err error
			if st, err = diskstore.Open(dir, diskstore.Options{Sync: diskstore.SyncNone, Logger: logger}); err != nil {
				b.Fatal(err)
			}
			o.Store = st
		}
		return o
	}
	start0 := snapshot(b)
	br, err := broker.New(openStore())
	if err != nil {
		b.Fatal(err)
	}
	before := snapshot(b) // the broker with an empty store: the baseline
	start := time.Now()
	b.StartTimer()
	buildOffline(b, br, sessions, perSession, size)
	b.StopTimer()
	build := time.Since(start)
	if variant == "disk-restarted" {
		shutdown(b, br)
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		st = nil
		start = time.Now()
		if br, err = broker.New(openStore()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "restart-s")
	}
	// The broker closes a connection with a 2 s write deadline, which on a
	// net.Pipe is a timer keeping the pipe reachable until it fires.
	time.Sleep(2500 * time.Millisecond)
	g := waitGoroutines(before.goroutines)
	if g > before.goroutines {
		buf := make([]byte, 1<<16)
		b.Logf("%d goroutines more than before:\n%s", g-before.goroutines, buf[:runtime.Stack(buf, true)])
	}
	after := snapshot(b)
	after.goroutines = g
	if path := os.Getenv("PETREL_MEASURE_HEAPPROF"); path != "" {
		writeHeapProfile(b, path+"."+variant)
	}
	stats := br.Stats()
	if stats.Sessions != sessions || stats.Clients != 0 {
		b.Fatalf("broker holds %d sessions, %d clients; want %d offline", stats.Sessions, stats.Clients, sessions)
	}
	queued := 0
	for _, i := range []int{0, sessions / 2, sessions - 1} {
		cs, _ := br.ClientStats(offlineID(i))
		queued += cs.Queued + cs.Inflight
	}
	if queued != 3*perSession {
		b.Fatalf("sampled sessions hold %d messages, want %d", queued, 3*perSession)
	}
	heap := float64(after.heap) - float64(before.heap)
	rss := float64(after.rss) - float64(before.rss)
	b.ReportMetric(build.Seconds(), "build-s")
	b.ReportMetric(heap/float64(sessions), "heap-B/session")
	b.ReportMetric(rss/float64(sessions), "rss-B/session")
	b.ReportMetric(heap/mib*100_000/float64(sessions), "heap-MB/100k")
	b.ReportMetric(rss/mib*100_000/float64(sessions), "rss-MB/100k")
	b.ReportMetric(float64(after.goroutines-before.goroutines), "goroutines")
	b.Logf("%s: goroutines %d before, %d after; HeapInuse +%.1f MB; the empty broker and store: heap +%.1f MB, rss +%.1f MB, goroutines +%d",
		variant, before.goroutines, after.goroutines, (float64(after.heapInuse)-float64(before.heapInuse))/mib,
		(float64(before.heap)-float64(start0.heap))/mib, (float64(before.rss)-float64(start0.rss))/mib, before.goroutines-start0.goroutines)
	shutdown(b, br)
	if st != nil {
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
}

// writeHeapProfile writes the live heap to path (go tool pprof
// -sample_index inuse_space).
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

func offlineID(i int) string { return fmt.Sprintf("offline-%06d", i) }

// buildOffline creates the offline sessions with 8 workers, each with its
// own publisher connection.
func buildOffline(b *testing.B, br *broker.Broker, sessions, perSession, size int) {
	const workers = 8
	payload := make([]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub, err := pipeConnect(br, fmt.Sprintf("offline-pub-%d", w), true)
			if err != nil {
				errs <- err
				return
			}
			defer pub.close()
			for i := w; i < sessions; i += workers {
				if err := buildOne(br, pub, offlineID(i), perSession, payload); err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func buildOne(br *broker.Broker, pub *pipeClient, id string, n int, payload []byte) error {
	c, err := pipeConnect(br, id, false)
	if err != nil {
		return err
	}
	topic := "offline/" + id
	if err := c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic, QoS: 1}}}); err != nil {
		return err
	}
	if p, err := c.read(); err != nil {
		return err
	} else if ack, ok := p.(*packet.Suback); !ok || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
		return fmt.Errorf("SUBACK expected, got %+v", p)
	}
	if err := c.send(&packet.Disconnect{}); err != nil {
		return err
	}
	c.close()
	// All n PUBLISH packets in one write: a net.Pipe write blocks until
	// the broker has read it.
	var buf []byte
	for k := range n {
		if buf, err = (&packet.Publish{QoS: 1, PacketID: uint16(k + 1), Topic: topic, Payload: payload}).Append(buf, packet.V311); err != nil {
			return err
		}
	}
	if err := pub.write(buf); err != nil {
		return err
	}
	for range n {
		p, err := pub.read()
		if err != nil {
			return err
		}
		if _, ok := p.(*packet.Puback); !ok {
			return fmt.Errorf("PUBACK expected, got %+v", p)
		}
	}
	return nil
}

// pipeClient is a 3.1.1 client on one end of a net.Pipe whose other end
// the broker serves.
type pipeClient struct {
	nc  net.Conn
	buf []byte
}

func pipeConnect(br *broker.Broker, id string, clean bool) (*pipeClient, error) {
	client, server := net.Pipe()
	go br.ServeConn(server)
	c := &pipeClient{nc: client}
	if err := c.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: clean}); err != nil {
		return nil, err
	}
	p, err := c.read()
	if err != nil {
		return nil, err
	}
	if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != packet.Success {
		return nil, fmt.Errorf("CONNACK expected, got %+v", p)
	}
	return c, nil
}

func (c *pipeClient) send(p packet.Packet) error {
	var err error
	if c.buf, err = p.Append(c.buf[:0], packet.V311); err != nil {
		return err
	}
	return c.write(c.buf)
}

func (c *pipeClient) write(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *pipeClient) read() (packet.Packet, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return packet.ReadPacket(c.nc, packet.V311, 0)
}

// close stops the deadline timers (a net.Pipe deadline is a timer that
// keeps the pipe reachable until it fires) and closes the pipe.
func (c *pipeClient) close() {
	_ = c.nc.SetDeadline(time.Time{})
	_ = c.nc.Close()
}
