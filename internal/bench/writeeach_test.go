package bench

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// publishWrites runs a QoS 0 publisher of n messages over a net.Pipe (whose
// reads return one write's bytes at most) and returns how many PUBLISH
// packets each write carried.
func publishWrites(t *testing.T, each bool, n int) []int {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	c := &conn{nc: cli, br: bufio.NewReader(cli), v: packet.V311}
	p := &publisher{c: c, topic: "t", quota: int64(n), each: each}
	var perWrite []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		for {
			k, err := srv.Read(buf)
			if err != nil {
				return
			}
			count := 0
			for b := buf[:k]; len(b) > 0; {
				_, rem, hl, err := packet.ParseFixedHeader(b, 0)
				if err != nil || hl+rem > len(b) {
					t.Errorf("a write ended inside a packet: %v", err)
					return
				}
				count++
				b = b[hl+rem:]
			}
			perWrite = append(perWrite, count)
		}
	}()
	var wg sync.WaitGroup
	var errs errSink
	if _, err := p.run(context.Background(), time.Now().Add(10*time.Second), 1, payloadHeader, newClock(), &wg, &errs); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	wg.Wait()
	<-done
	return perWrite
}

// TestWriteEach checks --write-each: every PUBLISH in a write of its own,
// where by default the publisher gathers many per write.
func TestWriteEach(t *testing.T) {
	each := publishWrites(t, true, 50)
	if len(each) != 50 {
		t.Errorf("write-each: %d writes for 50 messages: %v", len(each), each)
	}
	for _, k := range each {
		if k != 1 {
			t.Fatalf("write-each: a write carried %d packets", k)
		}
	}
	gathered := publishWrites(t, false, 50)
	if len(gathered) != 1 || gathered[0] != 50 {
		t.Errorf("default: writes carried %v packets, want one write of 50", gathered)
	}
}
