package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// samples returns packets of every type that exists in v; with props the
// 5.0 packets carry properties.
func samples(v Version, props bool) []Packet {
	pp := func(kv ...any) Properties {
		if v != V5 || !props {
			return Properties{}
		}
		return P(kv...)
	}
	name := "MQTT"
	if v == V31 {
		name = "MQIsdp"
	}
	user := UserProperty{"key", "value"}
	ps := []Packet{
		&Connect{ProtocolName: name, Version: v, KeepAlive: 30, ClientID: "client"},
		&Connect{ProtocolName: name, Version: v, CleanStart: true, ClientID: "c", KeepAlive: 0xffff,
			Will: &Will{Topic: "will/t", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true,
				Properties: pp(PropPayloadFormatIndicator, 0, PropMessageExpiryInterval, 10, PropContentType, "ct",
					PropResponseTopic, "rt", PropCorrelationData, []byte("cd"), PropWillDelayInterval, 7, PropUserProperty, user)},
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("secret"),
			Properties: pp(PropSessionExpiryInterval, uint32(0xffffffff), PropAuthenticationMethod, "m",
				PropAuthenticationData, []byte{9}, PropRequestProblemInformation, 1, PropRequestResponseInformation, 0,
				PropReceiveMaximum, 100, PropTopicAliasMaximum, 0, PropMaximumPacketSize, 1<<20, PropUserProperty, user)},
		&Connack{ReasonCode: Success},
		&Connack{ReasonCode: BadUsernameOrPassword},
		&Connack{ReasonCode: ServerUnavailable, Properties: pp(PropReasonString, "busy", PropServerReference, "other")},
		&Connack{SessionPresent: v != V31, Properties: pp(PropSessionExpiryInterval, 5, PropAssignedClientIdentifier, "id",
			PropServerKeepAlive, 10, PropResponseInformation, "ri", PropReceiveMaximum, 10, PropTopicAliasMaximum, 3,
			PropMaximumQoS, 1, PropRetainAvailable, 0, PropMaximumPacketSize, 1000, PropWildcardSubscriptionAvailable, 1,
			PropSubscriptionIdentifierAvailable, 0, PropSharedSubscriptionAvailable, 1, PropAuthenticationMethod, "am",
			PropAuthenticationData, []byte("ad"), PropUserProperty, user, PropUserProperty, user)},
		&Publish{Topic: "a/b/c", Payload: []byte("payload")},
		&Publish{QoS: 1, Retain: true, Topic: "t", PacketID: 1},
		&Publish{Dup: true, QoS: 2, Topic: "x/y", PacketID: 0xffff, Payload: bytes.Repeat([]byte{0xab}, 300),
			Properties: pp(PropPayloadFormatIndicator, 1, PropMessageExpiryInterval, 3600, PropContentType, "text/plain",
				PropResponseTopic, "resp", PropCorrelationData, []byte{1, 2, 3}, PropSubscriptionIdentifier, 1,
				PropSubscriptionIdentifier, MaxRemainingLength, PropTopicAlias, 9, PropUserProperty, user)},
		&Puback{PacketID: 1},
		&Pubrec{PacketID: 2},
		&Pubrel{PacketID: 3},
		&Pubcomp{PacketID: 4},
		&Subscribe{PacketID: 5, Subscriptions: []Subscription{{Filter: "a/+", QoS: 1}, {Filter: "#"}},
			Properties: pp(PropSubscriptionIdentifier, 42, PropUserProperty, user)},
		&Suback{PacketID: 5, ReasonCodes: []ReasonCode{GrantedQoS1, Success, GrantedQoS2, UnspecifiedError},
			Properties: pp(PropReasonString, "r")},
		&Unsubscribe{PacketID: 6, Filters: []string{"a/+", "#", "x"}, Properties: pp(PropUserProperty, user)},
		&Pingreq{},
		&Pingresp{},
		&Disconnect{},
	}
	if v == V5 {
		ps = append(ps,
			&Puback{PacketID: 1, ReasonCode: QuotaExceeded, Properties: pp(PropReasonString, "q")},
			&Pubrec{PacketID: 2, ReasonCode: NoMatchingSubscribers},
			&Pubrel{PacketID: 3, ReasonCode: PacketIdentifierNotFound, Properties: pp(PropUserProperty, user)},
			&Pubcomp{PacketID: 4, Properties: pp(PropReasonString, "ok")},
			&Subscribe{PacketID: 7, Subscriptions: []Subscription{
				{Filter: "a", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "b", RetainHandling: 1}}},
			&Suback{PacketID: 7, ReasonCodes: []ReasonCode{TopicFilterInvalid, SharedSubscriptionsNotSupported}},
			&Unsuback{PacketID: 8, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted, NotAuthorized},
				Properties: pp(PropReasonString, "r")},
			&Disconnect{ReasonCode: ServerShuttingDown, Properties: pp(PropSessionExpiryInterval, 0,
				PropServerReference, "s", PropReasonString, "bye", PropUserProperty, user)},
			&Disconnect{ReasonCode: DisconnectWithWill},
			&Auth{},
			&Auth{ReasonCode: ReAuthenticate},
			&Auth{ReasonCode: ContinueAuthentication, Properties: pp(PropAuthenticationMethod, "SCRAM-SHA-1",
				PropAuthenticationData, []byte("data"), PropReasonString, "r", PropUserProperty, user)},
			&Connect{ProtocolName: name, Version: v, ClientID: "p", PasswordFlag: true, Password: []byte("only")},
			&Publish{Topic: "", Properties: pp(PropTopicAlias, 1)},
		)
	} else {
		ps = append(ps, &Unsuback{PacketID: 8})
	}
	return ps
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		for _, props := range []bool{false, true} {
			if props && v != V5 {
				continue
			}
			for i, p := range samples(v, props) {
				name := v.String() + " " + p.Type().String()
				if props {
					name += " properties"
				}
				t.Run(name, func(t *testing.T) {
					prefix := []byte("prefix")
					b, err := p.Append(prefix, v)
					if err != nil {
						t.Fatalf("sample %d: Append: %v", i, err)
					}
					if string(b[:len(prefix)]) != "prefix" {
						t.Fatal("Append changed dst")
					}
					b = b[len(prefix):]
					if pub, ok := p.(*Publish); ok {
						if pub.Size(v) != len(b) {
							t.Errorf("Size = %d, encoded %d bytes", pub.Size(v), len(b))
						}
						// AppendHeader and the payload after it are Append.
						h, err := pub.AppendHeader(nil, v)
						if err != nil || !bytes.Equal(append(h, pub.Payload...), b) {
							t.Errorf("AppendHeader: % x, %v; with the payload, want % x", h, err, b)
						}
					}
					got, err := ReadPacket(bytes.NewReader(b), v, len(b))
					if err != nil {
						t.Fatalf("sample %d: ReadPacket(% x): %v", i, b, err)
					}
					if !reflect.DeepEqual(got, p) {
						t.Fatalf("sample %d:\n got %#v\nwant %#v", i, got, p)
					}
					h, rem, n, err := ParseFixedHeader(b, 0)
					if err != nil || n+rem != len(b) {
						t.Fatalf("ParseFixedHeader: %d+%d of %d, %v", n, rem, len(b), err)
					}
					got, err = Decode(h, b[n:], v)
					if err != nil || !reflect.DeepEqual(got, p) {
						t.Fatalf("Decode: %v\n got %#v\nwant %#v", err, got, p)
					}
				})
			}
		}
	}
}

// TestDecodeDoesNotAlias checks that a decoded packet keeps nothing of the
// (pooled) body.
func TestDecodeDoesNotAlias(t *testing.T) {
	for _, p := range samples(V5, true) {
		b, err := p.Append(nil, V5)
		if err != nil {
			t.Fatal(err)
		}
		h, _, n, _ := ParseFixedHeader(b, 0)
		body := b[n:]
		got, err := Decode(h, body, V5)
		if err != nil {
			t.Fatal(err)
		}
		for i := range body {
			body[i] = 0xee
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("%v changed with its body:\n got %#v\nwant %#v", p.Type(), got, p)
		}
	}
}

// TestDecodePublishTopicAndPayload: topic and payload share one
// allocation, yet writing into the payload, or appending to it, leaves the
// topic alone; DecodePublish resets a reused packet.
func TestDecodePublishTopicAndPayload(t *testing.T) {
	in := &Publish{QoS: 1, PacketID: 9, Topic: "a/b", Payload: []byte("xyz"),
		Properties: Properties{UserProperties: []UserProperty{{"k", "v"}}}}
	b, err := in.Append(nil, V5)
	if err != nil {
		t.Fatal(err)
	}
	h, _, n, _ := ParseFixedHeader(b, 0)
	var p Publish
	if err := DecodePublish(&p, h, b[n:], V5); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&p, in) {
		t.Fatalf("got %#v, want %#v", p, *in)
	}
	for i := range p.Payload {
		p.Payload[i] = '#'
	}
	_ = append(p.Payload, "more"...)
	if p.Topic != "a/b" {
		t.Fatalf("topic %q changed with the payload", p.Topic)
	}
	// Reused for a 3.1.1 QoS 0 packet without payload: nothing is left of the first.
	b, _ = (&Publish{Topic: "c"}).Append(nil, V311)
	h, _, n, _ = ParseFixedHeader(b, 0)
	if err := DecodePublish(&p, h, b[n:], V311); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, Publish{Topic: "c"}) {
		t.Fatalf("reused packet: got %#v", p)
	}
	if err := DecodePublish(&p, byte(PUBACK)<<4, []byte{0, 1}, V311); err == nil {
		t.Fatal("DecodePublish accepted a PUBACK")
	}
}

// Test3xEncoding checks the 3.x specific encodings: SUBACK failure codes as
// 0x80, no 3.1 session present, CONNACK return codes, no properties.
func Test3xEncoding(t *testing.T) {
	tests := []struct {
		name string
		v    Version
		p    Packet
		want []byte
	}{
		{"SUBACK failure codes as 0x80 [MQTT-3.9.3-2]", V311, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{NotAuthorized, GrantedQoS1, QuotaExceeded}}, hx("90 05 0001 80 01 80")},
		{"3.1 CONNACK without session present", V31, &Connack{SessionPresent: true}, hx("20 02 00 00")},
		{"3.1.1 CONNACK session present", V311, &Connack{SessionPresent: true}, hx("20 02 01 00")},
		{"3.1.1 CONNACK failure clears session present [MQTT-3.2.2-4]", V311, &Connack{SessionPresent: true, ReasonCode: Banned}, hx("20 02 00 05")},
		{"5.0 CONNACK failure clears session present [MQTT-3.2.2-6]", V5, &Connack{SessionPresent: true, ReasonCode: Banned}, hx("20 03 00 8a 00")},
		{"3.1.1 CONNACK bad authentication method", V311, &Connack{ReasonCode: BadAuthenticationMethod}, hx("20 02 00 04")},
		{"3.1.1 CONNACK other failure is server unavailable", V311, &Connack{ReasonCode: QuotaExceeded}, hx("20 02 00 03")},
		{"3.1.1 UNSUBACK without reason codes", V311, &Unsuback{PacketID: 2, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}, hx("b0 02 0002")},
		{"3.1.1 PUBACK without reason code and properties", V311, &Puback{PacketID: 2, ReasonCode: QuotaExceeded, Properties: P(PropReasonString, "x")}, hx("40 02 0002")},
		{"3.1.1 DISCONNECT without reason code", V311, &Disconnect{ReasonCode: ServerBusy}, hx("e0 00")},
		{"3.1.1 PUBLISH without properties", V311, &Publish{Topic: "t", Properties: P(PropTopicAlias, 1)}, hx("30 03 0001 't'")},
		{"3.1.1 SUBSCRIBE without 5.0 options", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "t", QoS: 1, NoLocal: true, RetainHandling: 2}}}, hx("82 06 0001 0001 't' 01")},
		{"3.1.1 CONNECT user name implied by value", V311, &Connect{ClientID: "c", Username: "u"}, pk(0x10, "0004 'MQTT' 04 80 0000 0001 'c' 0001 'u'")},
		{"5.0 PUBACK success short form", V5, &Puback{PacketID: 2}, hx("40 02 0002")},
		{"5.0 PUBACK reason code without properties", V5, &Puback{PacketID: 2, ReasonCode: QuotaExceeded}, hx("40 03 0002 97")},
		{"5.0 DISCONNECT success short form", V5, &Disconnect{}, hx("e0 00")},
		{"5.0 empty properties as one 0x00 byte", V5, &Publish{Topic: "t"}, hx("30 04 0001 't' 00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Append(nil, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x, want % x", got, tc.want)
			}
		})
	}
}

func TestAppendErrors(t *testing.T) {
	long := strings.Repeat("x", 0x10000)
	tests := []struct {
		name string
		v    Version
		p    Packet
	}{
		{"PUBLISH QoS 3", V311, &Publish{QoS: 3, Topic: "t", PacketID: 1}},
		{"PUBLISH QoS 1 packet id 0", V311, &Publish{QoS: 1, Topic: "t"}},
		{"PUBLISH DUP QoS 0", V311, &Publish{Dup: true, Topic: "t"}},
		{"PUBLISH topic too long", V311, &Publish{Topic: long}},
		{"PUBLISH property too long", V5, &Publish{Topic: "t", Properties: P(PropContentType, long)}},
		{"PUBLISH user property too long", V5, &Publish{Topic: "t", Properties: P(PropUserProperty, UserProperty{"k", long})}},
		{"PUBLISH subscription id 0", V5, &Publish{Topic: "t", Properties: P(PropSubscriptionIdentifier, 0)}},
		{"PUBLISH unknown version", Version(6), &Publish{Topic: "t"}},
		{"CONNECT will QoS 3", V311, &Connect{Will: &Will{Topic: "t", QoS: 3}}},
		{"CONNECT password without user name in 3.1.1", V311, &Connect{Password: []byte("p")}},
		{"CONNECT client id too long", V5, &Connect{ClientID: long}},
		{"PUBACK packet id 0", V5, &Puback{}},
		{"SUBSCRIBE no filter", V311, &Subscribe{PacketID: 1}},
		{"SUBSCRIBE QoS 3", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "t", QoS: 3}}}},
		{"SUBSCRIBE retain handling 3", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "t", RetainHandling: 3}}}},
		{"UNSUBSCRIBE no filter", V311, &Unsubscribe{PacketID: 1}},
		{"UNSUBSCRIBE filter too long", V311, &Unsubscribe{PacketID: 1, Filters: []string{long}}},
		{"SUBACK packet id 0", V311, &Suback{ReasonCodes: []ReasonCode{0}}},
		{"UNSUBACK packet id 0", V5, &Unsuback{}},
		{"AUTH in 3.1.1", V311, &Auth{}},
		{"PINGREQ unknown version", 0, &Pingreq{}},
		{"DISCONNECT unknown version", 7, &Disconnect{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte{1, 2, 3}
			got, err := tc.p.Append(dst, tc.v)
			if err == nil {
				t.Fatalf("no error, encoded % x", got)
			}
			if !bytes.Equal(got, []byte{1, 2, 3}) {
				t.Fatalf("dst changed to % x", got)
			}
		})
	}
}

func TestParseFixedHeader(t *testing.T) {
	tests := []struct {
		name      string
		b         []byte
		maxSize   int
		header    byte
		remaining int
		n         int
		err       error
	}{
		{"empty", nil, 0, 0, 0, 0, ErrIncomplete},
		{"first byte only", hx("30"), 0, 0, 0, 0, ErrIncomplete},
		{"zero", hx("c0 00"), 0, 0xc0, 0, 2, nil},
		{"127", hx("30 7f"), 0, 0x30, 127, 2, nil},
		{"128", hx("30 80 01"), 0, 0x30, 128, 3, nil},
		{"16383", hx("30 ff 7f"), 0, 0x30, 16383, 3, nil},
		{"16384", hx("30 80 80 01"), 0, 0x30, 16384, 4, nil},
		{"2097151", hx("30 ff ff 7f"), 0, 0x30, 2097151, 4, nil},
		{"2097152", hx("30 80 80 80 01"), 0, 0x30, 2097152, 5, nil},
		{"268435455", hx("30 ff ff ff 7f ee"), 0, 0x30, MaxRemainingLength, 5, nil},
		{"non-minimal accepted", hx("30 80 00"), 0, 0x30, 0, 3, nil},
		{"truncated 2 bytes", hx("30 80"), 0, 0, 0, 0, ErrIncomplete},
		{"truncated 4 bytes", hx("30 80 80 80"), 0, 0, 0, 0, ErrIncomplete},
		{"5 length bytes [3.1.1 §2.2.3]", hx("30 80 80 80 80 01"), 0, 0, 0, 0, ErrMalformedPacket},
		{"5 length bytes, 5th absent", hx("30 ff ff ff ff"), 0, 0, 0, 0, ErrMalformedPacket},
		{"at maxSize", hx("30 0a"), 12, 0x30, 10, 2, nil},
		{"over maxSize", hx("30 0b"), 12, 0x30, 11, 2, ErrPacketTooLarge},
		{"huge over maxSize", hx("30 ff ff ff 7f"), 1 << 20, 0x30, MaxRemainingLength, 5, ErrPacketTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, rem, n, err := ParseFixedHeader(tc.b, tc.maxSize)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.err == ErrIncomplete && err != ErrIncomplete {
				t.Fatalf("error %v is not ErrIncomplete itself", err)
			}
			if (err == nil || tc.err == ErrPacketTooLarge) && (h != tc.header || rem != tc.remaining || n != tc.n) {
				t.Fatalf("got %#x %d %d, want %#x %d %d", h, rem, n, tc.header, tc.remaining, tc.n)
			}
		})
	}
	b := hx("30 ff ff ff 7f")
	for _, in := range [][]byte{b, b[:3], hx("30 80 80 80 80 01")} {
		if a := testing.AllocsPerRun(100, func() { ParseFixedHeader(in, 1000) }); a != 0 {
			t.Errorf("ParseFixedHeader(% x) allocates %v times", in, a)
		}
	}
}

// errReader fails after its data.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadPacketErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		r       io.Reader
		maxSize int
		err     error
	}{
		{"empty stream", bytes.NewReader(nil), 0, io.EOF},
		{"header byte only", bytes.NewReader(hx("c0")), 0, io.ErrUnexpectedEOF},
		{"length truncated", bytes.NewReader(hx("30 80")), 0, io.ErrUnexpectedEOF},
		{"body empty", bytes.NewReader(hx("40 02")), 0, io.ErrUnexpectedEOF},
		{"body truncated", bytes.NewReader(hx("40 02 00")), 0, io.ErrUnexpectedEOF},
		{"reader error", &errReader{hx("40 02 00"), boom}, 0, boom},
		{"too large, checked before reading the body", &errReader{hx("30 ff ff ff 7f"), boom}, 1 << 10, ErrPacketTooLarge},
		{"length of 5 bytes", bytes.NewReader(hx("30 ff ff ff ff 01")), 0, ErrMalformedPacket},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ReadPacket(tc.r, V311, tc.maxSize)
			if p != nil || !errors.Is(err, tc.err) {
				t.Fatalf("got %v, %v; want error %v", p, err, tc.err)
			}
			if (tc.err == io.EOF || tc.err == io.ErrUnexpectedEOF || tc.err == boom) && err != tc.err {
				t.Fatalf("io error %v returned wrapped", err)
			}
		})
	}
}

func TestReadPacketSequence(t *testing.T) {
	var stream []byte
	ps := samples(V5, true)
	for _, p := range ps {
		var err error
		if stream, err = p.Append(stream, V5); err != nil {
			t.Fatal(err)
		}
	}
	r := &chunkReader{data: stream, sizes: []byte{0, 3, 1, 16, 7}}
	for i, want := range ps {
		got, err := ReadPacket(r, V5, 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("packet %d: %v\n got %#v\nwant %#v", i, err, got, want)
		}
	}
	if _, err := ReadPacket(r, V5, 0); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestDecodeUnknownVersion(t *testing.T) {
	if _, err := Decode(0xc0, nil, 0); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("got %v", err)
	}
	// CONNECT carries its own version.
	p, err := Decode(0x10, hx("0004 'MQTT' 04 02 003c 0000"), 0)
	if err != nil || p.(*Connect).Version != V311 {
		t.Fatalf("got %v, %v", p, err)
	}
}

func TestTypeAndVersionStrings(t *testing.T) {
	if PUBLISH.String() != "PUBLISH" || Type(16).String() != "Type(16)" || V5.String() != "5.0" {
		t.Fatal("unexpected String results")
	}
}
