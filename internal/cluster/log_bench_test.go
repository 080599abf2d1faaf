package cluster

import (
	"testing"
	"time"
)

// BenchmarkLog measures Log's throughput on three nodes in one process,
// the log at three replicas: 64-byte QoS 1 messages from one goroutine,
// at most 4,096 waiting for their quorum, timed from the first Log to
// the last done. It reports msg/s.
//
//	go test -run '^$' -bench BenchmarkLog -benchtime 20000x ./internal/cluster/
func BenchmarkLog(b *testing.B) {
	ms := startLogged(b, configs(b, 3, 3))
	n := ms[0].Node
	logOK(b, n, "bench/warm")
	payload := string(make([]byte, 64))
	window := make(chan struct{}, 4096)
	finished := make(chan struct{})
	var failed int
	done := 0
	callback := func(_ uint64, err error) {
		// Called in order, from one goroutine.
		if err != nil {
			failed++
		}
		<-window
		if done++; done == b.N {
			close(finished)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		window <- struct{}{}
		n.Log(qos1("bench/log", payload), callback)
	}
	<-finished
	el := time.Since(start)
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d messages not logged", failed, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msg/s")
}
