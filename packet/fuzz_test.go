package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// fuzzVersion maps a fuzz byte to a protocol version.
func fuzzVersion(b byte) Version { return Version(3 + b%3) }

// checkSentinel fails unless err wraps one of the decode sentinels.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	var rc ReasonCode
	if !errors.As(err, &rc) {
		t.Fatalf("error %v carries no reason code", err)
	}
	switch rc {
	case MalformedPacket, ProtocolError, UnsupportedProtocolVersion, PacketTooLarge, TopicAliasInvalid:
	default:
		t.Fatalf("error %v has reason code %v", err, rc)
	}
}

// reencode encodes p and decodes it again, failing unless it gets p back.
func reencode(t *testing.T, p Packet, v Version) {
	t.Helper()
	ev := encodeVersion(p, v)
	b, err := p.Append(nil, ev)
	if err != nil {
		t.Fatalf("Append(%#v): %v", p, err)
	}
	if pub, ok := p.(*Publish); ok && pub.Size(ev) != len(b) {
		t.Fatalf("Size = %d, encoded %d bytes", pub.Size(ev), len(b))
	}
	p2, err := ReadPacket(bytes.NewReader(b), ev, 0)
	if err != nil {
		t.Fatalf("re-decoding % x: %v (from %#v)", b, err, p)
	}
	if !reflect.DeepEqual(p, p2) {
		t.Fatalf("re-decoded packet differs:\n got %#v\nwant %#v", p2, p)
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range goldenCases() {
		h, body := splitPacket(tc.raw)
		f.Add(h, body, byte(tc.v-3))
	}
	f.Fuzz(func(t *testing.T, header byte, body []byte, ver byte) {
		v := fuzzVersion(ver)
		p, err := Decode(header, body, v)
		if Type(header>>4) == PUBLISH {
			// DecodePublish into a reused packet agrees with Decode.
			reused := &Publish{Dup: true, QoS: 2, Topic: "old", PacketID: 7, Payload: []byte("old"), Properties: Properties{UserProperties: []UserProperty{{"k", "v"}}}}
			rerr := DecodePublish(reused, header, body, v)
			if (err == nil) != (rerr == nil) {
				t.Fatalf("Decode error %v, DecodePublish error %v", err, rerr)
			}
			if err == nil && !reflect.DeepEqual(p, reused) {
				t.Fatalf("DecodePublish into a used packet:\n got %#v\nwant %#v", reused, p)
			}
			// DecodePublishInPlace agrees too, its topic and payload in body.
			inPlace := &Publish{Topic: "old", Payload: []byte("old")}
			ierr := DecodePublishInPlace(inPlace, header, body, v)
			if (err == nil) != (ierr == nil) {
				t.Fatalf("Decode error %v, DecodePublishInPlace error %v", err, ierr)
			}
			if err == nil && !reflect.DeepEqual(p, inPlace) {
				t.Fatalf("DecodePublishInPlace:\n got %#v\nwant %#v", inPlace, p)
			}
			if err == nil && len(inPlace.Payload) > 0 && &inPlace.Payload[len(inPlace.Payload)-1] != &body[len(body)-1] {
				t.Fatal("DecodePublishInPlace payload is not the end of body")
			}
		}
		if err != nil {
			if p != nil {
				t.Fatalf("packet %#v with error %v", p, err)
			}
			checkSentinel(t, err)
			return
		}
		reencode(t, p, v)
	})
}

func FuzzParseFixedHeader(f *testing.F) {
	for _, tc := range goldenCases() {
		f.Add(tc.raw, 0)
		f.Add(tc.raw, len(tc.raw)-1)
	}
	f.Add(hx("30 ff ff ff 7f"), 1<<20)
	f.Add(hx("30 80 80 80 80 01"), 0)
	f.Fuzz(func(t *testing.T, b []byte, maxSize int) {
		h, rem, n, err := ParseFixedHeader(b, maxSize)
		switch {
		case err == ErrIncomplete:
			if len(b) >= 5 {
				t.Fatalf("ErrIncomplete with %d bytes", len(b))
			}
			return
		case errors.Is(err, ErrPacketTooLarge):
			if maxSize <= 0 || n+rem <= maxSize {
				t.Fatalf("too large: %d+%d, maxSize %d", n, rem, maxSize)
			}
		case err != nil:
			checkSentinel(t, err)
			return
		}
		if n < 2 || n > 5 || n > len(b) || rem < 0 || rem > MaxRemainingLength || h != b[0] {
			t.Fatalf("got %#x %d %d from % x", h, rem, n, b)
		}
		if err == nil && maxSize > 0 && n+rem > maxSize {
			t.Fatalf("%d+%d accepted with maxSize %d", n, rem, maxSize)
		}
		if b[n-1]&0x80 != 0 || (n > 2 && b[n-2]&0x80 == 0) {
			t.Fatalf("length ends at the wrong byte: n %d in % x", n, b)
		}
		var x int
		for i := n - 1; i >= 1; i-- {
			x = x<<7 | int(b[i]&0x7f)
		}
		if x != rem {
			t.Fatalf("remaining %d, want %d", rem, x)
		}
	})
}

// streamResult is one step of decoding a stream: a packet or an error.
type streamResult struct {
	p   Packet
	err string
}

// decodeWhole decodes packets from data in one piece with ParseFixedHeader
// and Decode, as the broker does, until the first error. A CONNECT switches
// the version. Incomplete input is reported as ReadPacket reports it.
func decodeWhole(data []byte, v Version, maxSize int) []streamResult {
	var out []streamResult
	for {
		if len(data) == 0 {
			return append(out, streamResult{err: io.EOF.Error()})
		}
		h, rem, n, err := ParseFixedHeader(data, maxSize)
		if err == ErrIncomplete || (err == nil && len(data) < n+rem) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return append(out, streamResult{err: err.Error()})
		}
		p, err := Decode(h, data[n:n+rem], v)
		if err != nil {
			return append(out, streamResult{err: err.Error()})
		}
		if c, ok := p.(*Connect); ok {
			v = c.Version
		}
		out = append(out, streamResult{p: p})
		data = data[n+rem:]
	}
}

// decodeChunked decodes the same stream with ReadPacket from a reader that
// returns data in chunks sized by chunks.
func decodeChunked(data, chunks []byte, v Version, maxSize int) []streamResult {
	r := &chunkReader{data: data, sizes: chunks}
	var out []streamResult
	for {
		p, err := ReadPacket(r, v, maxSize)
		if err != nil {
			return append(out, streamResult{err: err.Error()})
		}
		if c, ok := p.(*Connect); ok {
			v = c.Version
		}
		out = append(out, streamResult{p: p})
	}
}

func FuzzReadPacketStream(f *testing.F) {
	byVersion := map[Version][]byte{}
	for _, tc := range goldenCases() {
		f.Add(tc.raw, []byte{byte(len(tc.raw))}, byte(tc.v-3))
		if tc.err == nil {
			byVersion[tc.v] = append(byVersion[tc.v], tc.raw...)
		}
	}
	for v, stream := range byVersion {
		f.Add(stream, []byte{1, 5, 0, 16, 2}, byte(v-3))
		f.Add(stream, []byte{}, byte(v-3)+3*40)
	}
	f.Fuzz(func(t *testing.T, data, chunks []byte, ver byte) {
		v := fuzzVersion(ver)
		maxSize := int(ver/3) * 4 // 0 (no bound) for the first three values
		whole := decodeWhole(data, v, maxSize)
		chunked := decodeChunked(data, chunks, v, maxSize)
		if !reflect.DeepEqual(whole, chunked) {
			t.Fatalf("in one piece:\n%#v\nin chunks:\n%#v", whole, chunked)
		}
	})
}

func FuzzProperties(f *testing.F) {
	for _, p := range samples(V5, true) {
		for _, props := range packetProps(p) {
			n, err := props.size()
			if err != nil {
				f.Fatal(err)
			}
			for k := range numPropKinds {
				f.Add(props.appendTo(nil, n), byte(k))
			}
		}
	}
	f.Add(hx("02 0b 00"), byte(propsPublish))
	f.Add(hx("04 0b 01 0b 02"), byte(propsSubscribe))
	f.Add(hx("06 0b ffffffff7f"), byte(propsSubscribe))
	f.Fuzz(func(t *testing.T, data []byte, kind byte) {
		k := propKind(kind % byte(numPropKinds))
		var p Properties
		d := decoder{b: data, pkt: "fuzz"}
		if err := p.decode(&d, k); err != nil {
			checkSentinel(t, err)
			return
		}
		consumed := len(data) - len(d.b)
		n, err := p.size()
		if err != nil {
			t.Fatalf("size: %v", err)
		}
		enc := p.appendTo(nil, n)
		if len(enc) > consumed {
			t.Fatalf("encoding of %d bytes longer than the %d decoded", len(enc), consumed)
		}
		var p2 Properties
		d2 := decoder{b: enc, pkt: "fuzz"}
		if err := p2.decode(&d2, k); err != nil || len(d2.b) != 0 {
			t.Fatalf("re-decoding % x: %v, %d bytes left", enc, err, len(d2.b))
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("re-decoded properties differ:\n got %#v\nwant %#v", p2, p)
		}
	})
}

// packetProps returns the properties a packet carries.
func packetProps(p Packet) []Properties {
	switch p := p.(type) {
	case *Connect:
		if p.Will != nil {
			return []Properties{p.Properties, p.Will.Properties}
		}
		return []Properties{p.Properties}
	case *Connack:
		return []Properties{p.Properties}
	case *Publish:
		return []Properties{p.Properties}
	case *Puback:
		return []Properties{p.Properties}
	case *Pubrel:
		return []Properties{p.Properties}
	case *Subscribe:
		return []Properties{p.Properties}
	case *Suback:
		return []Properties{p.Properties}
	case *Unsubscribe:
		return []Properties{p.Properties}
	case *Unsuback:
		return []Properties{p.Properties}
	case *Disconnect:
		return []Properties{p.Properties}
	case *Auth:
		return []Properties{p.Properties}
	}
	return nil
}
