package session

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"
)

// TestNewMessage: topic and payload are copies, apart from each other and
// from the caller's memory, at every size around the size classes; an
// empty payload is nil; a small message is one allocation.
func TestNewMessage(t *testing.T) {
	if s := unsafe.Sizeof(Message{}); s != 96 {
		t.Fatalf("Message is %d bytes; NewMessage's size classes assume 96", s)
	}
	for _, n := range []int{0, 1, 31, 32, 33, 64, 65, 95, 96, 97, 160, 161, 224, 225, 288, 289, 416, 417, 5000} {
		topic := []byte(strings.Repeat("t", 1+n%7))
		payload := bytes.Repeat([]byte{'p'}, n)
		m := NewMessage(string(topic), payload)
		if m.Topic != string(topic) || !bytes.Equal(m.Payload, payload) {
			t.Fatalf("n=%d: got %q %q", n, m.Topic, m.Payload)
		}
		if n == 0 && m.Payload != nil {
			t.Fatalf("empty payload is %#v, want nil", m.Payload)
		}
		for i := range payload {
			payload[i] = 'x'
		}
		if n > 0 && m.Payload[0] != 'p' {
			t.Fatalf("n=%d: payload shares the caller's memory", n)
		}
		if n > 0 {
			_ = append(m.Payload, "more"...) // capacity ends with the payload
			m.Payload[0] = '#'
		}
		if m.Topic != strings.Repeat("t", 1+n%7) {
			t.Fatalf("n=%d: topic %q changed with the payload", n, m.Topic)
		}
		if m.QoS != 0 || m.Retain || m.Properties != nil || m.Origin != "" || !m.Expiry.IsZero() {
			t.Fatalf("n=%d: other fields not zero: %+v", n, m)
		}
	}
	topic, payload := "a/b/c", make([]byte, 100)
	if a := testing.AllocsPerRun(100, func() { _ = NewMessage(topic, payload) }); a != 1 {
		t.Fatalf("NewMessage of 105 bytes: %v allocations, want 1", a)
	}
}
