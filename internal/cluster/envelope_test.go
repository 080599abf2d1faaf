package cluster

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	props := &packet.Properties{
		PayloadFormatIndicator: 1,
		ContentType:            "text/plain",
		ResponseTopic:          "reply/here",
		CorrelationData:        []byte{0, 1, 2},
		UserProperties:         []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "", Value: "é"}},
	}
	for _, id := range []packet.PropertyID{packet.PropPayloadFormatIndicator, packet.PropContentType, packet.PropResponseTopic, packet.PropCorrelationData} {
		props.Set(id)
	}
	tests := []struct {
		name string
		msg  session.Message
	}{
		{"bare", session.Message{Topic: "a/b", Payload: []byte("x")}},
		{"empty payload", session.Message{Topic: "a", QoS: 1, Retain: true}},
		{"qos2 with origin", session.Message{Topic: "a", Payload: []byte("p"), QoS: 2, Origin: "tenant\x00client"}},
		{"expiry and properties", session.Message{Topic: "t", Payload: []byte("pp"), QoS: 1, Properties: props, Expiry: now.Add(1500 * time.Millisecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := appendEnvelope(nil, &tt.msg, "n1", 42, now)
			setSeq(body, 7)
			later := now.Add(time.Hour)
			e, err := decodeEnvelope(tt.msg.Topic, body, later)
			if err != nil {
				t.Fatal(err)
			}
			if e.node != "n1" || e.incarnation != 42 || e.seq != 7 {
				t.Fatalf("origin %q/%d seq %d", e.node, e.incarnation, e.seq)
			}
			m := e.msg
			if m.Topic != tt.msg.Topic || !bytes.Equal(m.Payload, tt.msg.Payload) || m.QoS != tt.msg.QoS ||
				m.Retain != tt.msg.Retain || m.Origin != tt.msg.Origin {
				t.Fatalf("got %+v, want %+v", m, tt.msg)
			}
			if !reflect.DeepEqual(m.Properties, tt.msg.Properties) {
				t.Fatalf("properties %+v, want %+v", m.Properties, tt.msg.Properties)
			}
			// The remaining expiry (1.5 s, rounded up to 2 s) counts from
			// when the receiver decodes it [MQTT-3.3.2-6].
			if tt.msg.Expiry.IsZero() != m.Expiry.IsZero() || (!m.Expiry.IsZero() && !m.Expiry.Equal(later.Add(2*time.Second))) {
				t.Fatalf("expiry %v, want 2 s after %v", m.Expiry, later)
			}
		})
	}
}

func TestEnvelopeRefusesMalformed(t *testing.T) {
	good := appendEnvelope(nil, &session.Message{Topic: "t", Payload: []byte("x"), Origin: "o"}, "n", 1, time.Now())
	bad := map[string][]byte{
		"short":        good[:envFixed-1],
		"version":      append([]byte{9}, good[1:]...),
		"qos 3":        append([]byte{envVersion, 3}, good[2:]...),
		"unknown flag": append([]byte{envVersion, 1 << 6}, good[2:]...),
		"node length":  append(append([]byte{}, good[:envFixed]...), 0x7f),
		"props mask 0": append(append([]byte{envVersion, flagProps}, good[2:envFixed]...), 0, 0, 0),
		"user count": append(append([]byte{envVersion, flagProps}, good[2:envFixed]...),
			0, 0, propUser, 100, 1, 'k'),
		// The origin node names a dedup window the receiver keeps: no
		// longer than a node id may be, never empty.
		"long origin node": appendEnvelope(nil, &session.Message{Topic: "t"}, strings.Repeat("n", maxNodeLen+1), 1, time.Now()),
		"no origin node":   appendEnvelope(nil, &session.Message{Topic: "t"}, "", 1, time.Now()),
	}
	for name, b := range bad {
		if _, err := decodeEnvelope("t", b, time.Now()); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	props := &packet.Properties{ContentType: "c", UserProperties: []packet.UserProperty{{Key: "a", Value: "b"}}}
	props.Set(packet.PropContentType)
	f.Add(appendEnvelope(nil, &session.Message{Topic: "t", Payload: []byte("x"), QoS: 1, Properties: props, Expiry: now.Add(time.Minute)}, "n1", 3, now))
	f.Add(appendEnvelope(nil, &session.Message{Topic: "t", Retain: true}, "n", 0, now))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope("t", b, now)
		if err != nil {
			return
		}
		// What decodes encodes back to an envelope that decodes the same.
		again := appendEnvelope(nil, e.msg, e.node, e.incarnation, now)
		setSeq(again, e.seq)
		e2, err := decodeEnvelope("t", again, now)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if e2.node != e.node || e2.seq != e.seq || e2.msg.QoS != e.msg.QoS || e2.msg.Retain != e.msg.Retain ||
			e2.msg.Origin != e.msg.Origin || !bytes.Equal(e2.msg.Payload, e.msg.Payload) ||
			!e2.msg.Expiry.Equal(e.msg.Expiry) || !reflect.DeepEqual(e2.msg.Properties, e.msg.Properties) {
			t.Fatalf("round trip changed the message: %+v -> %+v", e.msg, e2.msg)
		}
	})
}

func FuzzKick(f *testing.F) {
	f.Add(appendKick(nil, "tenant\x00client", 5))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		key, epoch, ok := decodeKick(b)
		if !ok {
			return
		}
		if !bytes.Equal(appendKick(nil, key, epoch), b) {
			t.Fatalf("kick %q/%d does not encode back to %x", key, epoch, b)
		}
	})
}

func TestSeenWindow(t *testing.T) {
	var w seenWindow
	steps := []struct {
		seq  uint64
		want bool
	}{
		{1, true}, {1, false}, {2, true}, {2, false}, // copies refused
		{5, true}, {4, true}, {3, true}, {4, false}, // late but new: accepted once
		{5 + windowBits, true}, {5, false}, // older than the window: refused
		{6, true}, {6, false}, // the oldest in the window, new then a copy
		{5 + windowBits - 1, true}, {0, false},
		{10 * windowBits, true}, {10*windowBits - 1, true}, {10*windowBits - 1, false},
	}
	for i, s := range steps {
		if got := w.accept(s.seq); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
}
