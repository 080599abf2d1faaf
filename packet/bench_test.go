package packet

import (
	"bytes"
	"testing"
)

func benchPublish(v Version) *Publish {
	p := &Publish{QoS: 1, Topic: "sensors/building-1/floor-2/temperature", PacketID: 42,
		Payload: bytes.Repeat([]byte("x"), 256)}
	if v == V5 {
		p.Properties = P(PropMessageExpiryInterval, 60, PropContentType, "text/plain",
			PropUserProperty, UserProperty{"trace", "abc123"})
	}
	return p
}

func BenchmarkDecodePublish(b *testing.B) {
	var p Publish
	decoders := []struct {
		name   string
		decode func(h byte, body []byte, v Version) error
	}{
		{"", func(h byte, body []byte, v Version) error { _, err := Decode(h, body, v); return err }},
		// The broker's reader: DecodePublishInPlace into a reused packet,
		// topic and payload left in the body (the broker copies them once,
		// with its message): no allocation for a 3.1.1 message.
		{"/inplace", func(h byte, body []byte, v Version) error { return DecodePublishInPlace(&p, h, body, v) }},
		// DecodePublish into a reused packet: one allocation (topic and
		// payload) for a 3.1.1 message.
		{"/reused", func(h byte, body []byte, v Version) error { return DecodePublish(&p, h, body, v) }},
	}
	for _, v := range []Version{V311, V5} {
		for _, d := range decoders {
			b.Run(v.String()+d.name, func(b *testing.B) {
				raw, err := benchPublish(v).Append(nil, v)
				if err != nil {
					b.Fatal(err)
				}
				h, _, n, _ := ParseFixedHeader(raw, 0)
				body := raw[n:]
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					if err := d.decode(h, body, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			p := benchPublish(v)
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			b.SetBytes(int64(p.Size(v)))
			for b.Loop() {
				var err error
				if buf, err = p.Append(buf[:0], v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseFixedHeader(b *testing.B) {
	raw := hx("32 ff ff 7f")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ParseFixedHeader(raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendPublishAllocs(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		p := benchPublish(v)
		buf := make([]byte, 0, 1024)
		if a := testing.AllocsPerRun(100, func() { buf, _ = p.Append(buf[:0], v) }); a != 0 {
			t.Errorf("%v: Append allocates %v times into a reused buffer", v, a)
		}
		if a := testing.AllocsPerRun(100, func() { p.Size(v) }); a != 0 {
			t.Errorf("%v: Size allocates %v times", v, a)
		}
	}
}
