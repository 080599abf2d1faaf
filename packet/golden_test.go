package packet

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// goldenCase is one byte-level case: raw is a whole packet (fixed header
// included), decoded for version v, giving want or an error wrapping err.
type goldenCase struct {
	name     string
	v        Version
	raw      []byte
	want     Packet
	err      error
	noncanon bool // Append(want) does not give raw back (a non-shortest form)
}

// x3 repeats cases for 3.1 and 3.1.1, whose encodings are the same.
func x3(cases ...goldenCase) []goldenCase {
	var out []goldenCase
	for _, c := range cases {
		for _, v := range []Version{V31, V311} {
			c := c
			c.v = v
			c.name = v.String() + " " + c.name
			out = append(out, c)
		}
	}
	return out
}

// xall repeats cases for every version.
func xall(cases ...goldenCase) []goldenCase {
	out := x3(cases...)
	for _, c := range cases {
		c.v = V5
		c.name = "5.0 " + c.name
		out = append(out, c)
	}
	return out
}

// tag prefixes the case names with a version.
func tag(v Version, cases ...goldenCase) []goldenCase {
	for i := range cases {
		cases[i].v = v
		cases[i].name = v.String() + " " + cases[i].name
	}
	return cases
}

func goldenCases() []goldenCase {
	var cs []goldenCase
	add := func(c ...goldenCase) { cs = append(cs, c...) }
	addAll := func(c []goldenCase) { cs = append(cs, c...) }

	// Fixed header.
	addAll(xall(
		goldenCase{name: "reserved type 0 [3.1.1 §2.2.1]", raw: hx("00 00"), err: ErrMalformedPacket},
		goldenCase{name: "remaining length VBI of 5 bytes [3.1.1 §2.2.3]", raw: hx("30 ff ff ff ff 7f"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK flags 0x1 [MQTT-2.2.2-2]", raw: hx("21 02 00 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBACK flags 0x2 [MQTT-2.2.2-2]", raw: hx("42 02 00 01"), err: ErrMalformedPacket},
		goldenCase{name: "PUBREL flags 0x0 [MQTT-3.6.1-1]", raw: hx("60 02 00 01"), err: ErrMalformedPacket},
		goldenCase{name: "SUBSCRIBE flags 0x0 [MQTT-3.8.1-1]", raw: pk(0x80, "0001 0001 't' 00"), err: ErrMalformedPacket},
		goldenCase{name: "UNSUBSCRIBE flags 0x0 [MQTT-3.10.1-1]", raw: pk(0xa0, "0001 0001 't'"), err: ErrMalformedPacket},
		goldenCase{name: "PINGREQ flags 0x1 [MQTT-2.2.2-2]", raw: hx("c1 00"), err: ErrMalformedPacket},
		goldenCase{name: "PINGRESP flags 0x8 [MQTT-2.2.2-2]", raw: hx("d8 00"), err: ErrMalformedPacket},
		goldenCase{name: "DISCONNECT flags 0x2 [MQTT-2.2.2-2]", raw: hx("e2 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT flags 0x1 [MQTT-2.2.2-2]", raw: pk(0x11, "0004 'MQTT' 04 02 003c 0000"), err: ErrMalformedPacket},
		goldenCase{name: "SUBACK flags 0x2 [MQTT-2.2.2-2]", raw: pk(0x92, "0001 00"), err: ErrMalformedPacket},
		goldenCase{name: "UNSUBACK flags 0x2 [MQTT-2.2.2-2]", raw: pk(0xb2, "0001"), err: ErrMalformedPacket},
	))
	addAll(x3(goldenCase{name: "AUTH is reserved type 15 in 3.x [3.1.1 §2.2.1]", raw: hx("f0 00"), err: ErrMalformedPacket}))
	addAll(tag(V5, goldenCase{name: "AUTH flags 0x1 [MQTT-2.2.2-2]", raw: hx("f1 00"), err: ErrMalformedPacket}))

	// CONNECT.
	add(
		goldenCase{name: "3.1.1 CONNECT minimal, empty client id [MQTT-3.1.3-6]", v: V311,
			raw:  pk(0x10, "0004 'MQTT' | 04 | 02 (clean) | 003c | 0000"),
			want: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 60}},
		goldenCase{name: "3.1 CONNECT MQIsdp", v: V31,
			raw:  pk(0x10, "0006 'MQIsdp' | 03 | 02 | 003c | 0003 'abc'"),
			want: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "abc"}},
		goldenCase{name: "3.1.1 CONNECT will, user name, password", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 | ee (user|pass|will retain|will QoS 1|will|clean) | 000a |"+
				"0003 'cid' | 0001 't' | 0002 'hi' | 0001 'u' | 0002 'pw'"),
			want: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 10, ClientID: "cid",
				Will:         &Will{Topic: "t", Payload: []byte("hi"), QoS: 1, Retain: true},
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw")}},
		goldenCase{name: "3.1 CONNECT will QoS 2, empty will payload and password", v: V31,
			raw: pk(0x10, "0006 'MQIsdp' 03 | d4 (user|pass|will QoS 2|will) | 0000 |"+
				"0001 'c' | 0001 't' | 0000 | 0001 'u' | 0000"),
			want: &Connect{ProtocolName: "MQIsdp", Version: V31, ClientID: "c",
				Will:         &Will{Topic: "t", QoS: 2},
				UsernameFlag: true, Username: "u", PasswordFlag: true}},
		goldenCase{name: "5.0 CONNECT properties", v: V5,
			raw: pk(0x10, "0004 'MQTT' 05 | c2 (user|pass|clean) | 003c |"+
				"0f | 11 0000003c (session expiry) | 21 0010 (receive max) | 26 0001 'k' 0001 'v' |"+
				"0003 'cid' | 0001 'u' | 0002 'pw'"),
			want: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "cid",
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw"),
				Properties: P(PropSessionExpiryInterval, 60, PropReceiveMaximum, 16, PropUserProperty, UserProperty{"k", "v"})}},
		goldenCase{name: "5.0 CONNECT will properties, password without user name", v: V5,
			raw: pk(0x10, "0004 'MQTT' 05 | 46 (pass|will|clean) | 0000 | 00 | 0000 |"+
				"07 | 01 01 (payload format) | 18 00000005 (will delay) | 0001 't' | 0000 | 0002 'pw'"),
			want: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true,
				Will:         &Will{Topic: "t", Properties: P(PropPayloadFormatIndicator, 1, PropWillDelayInterval, 5)},
				PasswordFlag: true, Password: []byte("pw")}},
		goldenCase{name: "5.0 CONNECT all CONNECT properties", v: V5,
			raw: pk(0x10, "0004 'MQTT' 05 00 0000 | 1d |"+
				"11 00000001 | 15 0002 'am' | 16 0001 ff | 17 00 | 19 01 | 21 0001 | 22 0005 | 27 00000100 | 0000"),
			want: &Connect{ProtocolName: "MQTT", Version: V5, Properties: P(
				PropSessionExpiryInterval, 1, PropAuthenticationMethod, "am", PropAuthenticationData, []byte{0xff},
				PropRequestProblemInformation, 0, PropRequestResponseInformation, 1, PropReceiveMaximum, 1,
				PropTopicAliasMaximum, 5, PropMaximumPacketSize, 256)}},

		goldenCase{name: "CONNECT protocol name MQTX [MQTT-3.1.2-1]", v: V311,
			raw: pk(0x10, "0004 'MQTX' 04 02 003c 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT protocol name invalid UTF-8 [MQTT-1.5.3-1]", v: V311,
			raw: pk(0x10, "0004 'MQT' ff 04 02 003c 0000"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT MQTT level 3 [MQTT-3.1.2-2]", v: V311,
			raw: pk(0x10, "0004 'MQTT' 03 02 003c 0000"), err: ErrUnsupportedVersion},
		goldenCase{name: "CONNECT MQTT level 6 [MQTT-3.1.2-2]", v: V311,
			raw: pk(0x10, "0004 'MQTT' 06 02 003c 0000"), err: ErrUnsupportedVersion},
		goldenCase{name: "CONNECT MQIsdp level 4 [MQTT-3.1.2-2]", v: V311,
			raw: pk(0x10, "0006 'MQIsdp' 04 02 003c 0000"), err: ErrUnsupportedVersion},
		goldenCase{name: "CONNECT truncated protocol name", v: V311,
			raw: pk(0x10, "0004 'MQ'"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT truncated keep alive", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT missing client id", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 003c"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT trailing byte", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 003c 0000 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT client id invalid UTF-8 [MQTT-1.5.3-1]", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 003c 0002 c328"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT client id surrogate [MQTT-1.5.3-1]", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 003c 0003 eda080"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT client id U+0000 [MQTT-1.5.3-2]", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 02 003c 0001 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT will topic truncated", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 06 003c 0000 0005 'ab'"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT password missing", v: V311,
			raw: pk(0x10, "0004 'MQTT' 04 c2 003c 0000 0001 'u'"), err: ErrMalformedPacket},
		goldenCase{name: "5.0 CONNECT will properties missing", v: V5,
			raw: pk(0x10, "0004 'MQTT' 05 06 003c 00 0000"), err: ErrMalformedPacket},
	)
	for _, c := range []struct {
		v      Version
		prefix string
	}{{V31, "0006 'MQIsdp' 03"}, {V311, "0004 'MQTT' 04"}, {V5, "0004 'MQTT' 05"}} {
		props := ""
		if c.v == V5 {
			props = "00"
		}
		add(tag(c.v,
			goldenCase{name: "CONNECT reserved flag [MQTT-3.1.2-3]",
				raw: pk(0x10, c.prefix+" 03 003c"+props+"0000"), err: ErrMalformedPacket},
			goldenCase{name: "CONNECT will QoS without will flag [MQTT-3.1.2-11][MQTT-3.1.2-13]",
				raw: pk(0x10, c.prefix+" 0a 003c"+props+"0000"), err: ErrMalformedPacket},
			goldenCase{name: "CONNECT will retain without will flag [MQTT-3.1.2-15]",
				raw: pk(0x10, c.prefix+" 22 003c"+props+"0000"), err: ErrMalformedPacket},
			goldenCase{name: "CONNECT will QoS 3 [MQTT-3.1.2-14]",
				raw: pk(0x10, c.prefix+" 1e 003c"+props+"0000"+props+"0001 't' 0000"), err: ErrMalformedPacket},
		)...)
	}
	addAll(x3(goldenCase{name: "CONNECT password without user name [MQTT-3.1.2-22]",
		raw: pk(0x10, "0004 'MQTT' 04 42 003c 0000 0002 'pw'"), err: ErrMalformedPacket}))
	cs[len(cs)-2].raw = pk(0x10, "0006 'MQIsdp' 03 42 003c 0000 0002 'pw'")
	add(tag(V5,
		goldenCase{name: "CONNECT property not allowed: topic alias [5.0 table 2-4]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 03 23 0001 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT unknown property 0x05 [5.0 §2.2.2.2]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 03 05 0000 0000"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT duplicate session expiry [5.0 §3.1.2.11.2]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 0a 11 00000001 11 00000002 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT receive maximum 0 [5.0 §3.1.2.11.3]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 03 21 0000 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT maximum packet size 0 [5.0 §3.1.2.11.4]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 05 27 00000000 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT request problem information 2 [5.0 §3.1.2.11.7]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 02 17 02 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT request response information 2 [5.0 §3.1.2.11.6]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 02 19 02 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT property length beyond packet [5.0 §2.2.2.1]",
			raw: pk(0x10, "0004 'MQTT' 05 02 003c 05 11 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNECT will property not allowed: session expiry [5.0 table 2-4]",
			raw: pk(0x10, "0004 'MQTT' 05 06 003c 00 0000 05 11 00000001 0001 't' 0000"), err: ErrProtocolError},
		goldenCase{name: "CONNECT duplicate user property allowed, duplicate will delay not [5.0 §3.1.3.2.2]",
			raw: pk(0x10, "0004 'MQTT' 05 06 003c 00 0000 0a 18 00000001 18 00000001 0001 't' 0000"), err: ErrProtocolError},
	)...)

	// CONNACK.
	add(
		goldenCase{name: "3.1.1 CONNACK session present, accepted", v: V311,
			raw: hx("20 02 01 00"), want: &Connack{SessionPresent: true}},
		goldenCase{name: "3.1.1 CONNACK not authorized (5)", v: V311,
			raw: hx("20 02 00 05"), want: &Connack{ReasonCode: NotAuthorized}},
		goldenCase{name: "3.1.1 CONNACK unacceptable protocol version (1)", v: V311,
			raw: hx("20 02 00 01"), want: &Connack{ReasonCode: UnsupportedProtocolVersion}},
		goldenCase{name: "3.1 CONNACK identifier rejected (2)", v: V31,
			raw: hx("20 02 00 02"), want: &Connack{ReasonCode: ClientIdentifierNotValid}},
		goldenCase{name: "3.1 CONNACK first byte is unused", v: V31,
			raw: hx("20 02 01 00"), want: &Connack{}, noncanon: true},
		goldenCase{name: "5.0 CONNACK properties", v: V5,
			raw:  pk(0x20, "01 00 | 0c | 21 0014 (receive max) | 25 00 (retain available) | 12 0004 'auto'"),
			want: &Connack{SessionPresent: true, Properties: P(PropReceiveMaximum, 20, PropRetainAvailable, 0, PropAssignedClientIdentifier, "auto")},
			// properties are written in identifier order
			noncanon: true},
		goldenCase{name: "5.0 CONNACK not authorized", v: V5,
			raw: hx("20 03 00 87 00"), want: &Connack{ReasonCode: NotAuthorized}},
		goldenCase{name: "5.0 CONNACK all CONNACK byte properties", v: V5,
			raw: pk(0x20, "00 00 | 11 | 24 00 | 25 01 | 28 00 | 29 01 | 2a 00 | 13 0005 | 1c 0001 's'"),
			want: &Connack{Properties: P(PropMaximumQoS, 0, PropRetainAvailable, 1, PropWildcardSubscriptionAvailable, 0,
				PropSubscriptionIdentifierAvailable, 1, PropSharedSubscriptionAvailable, 0, PropServerKeepAlive, 5,
				PropServerReference, "s")},
			noncanon: true},
	)
	add(tag(V311,
		goldenCase{name: "CONNACK reserved flag bits [3.1.1 §3.2.2.1]", raw: hx("20 02 02 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK unknown return code 6 [3.1.1 §3.2.2.3]", raw: hx("20 02 00 06"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK session present with failure [MQTT-3.2.2-4]", raw: hx("20 02 01 05"), err: ErrProtocolError},
		goldenCase{name: "CONNACK trailing byte [3.1.1 §3.2.1]", raw: hx("20 03 00 00 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK truncated", raw: hx("20 01 00"), err: ErrMalformedPacket},
	)...)
	add(tag(V5,
		goldenCase{name: "CONNACK reserved flag bits [MQTT-3.2.2-1]", raw: hx("20 03 80 00 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK invalid reason code 0x10 [5.0 §3.2.2.2]", raw: hx("20 03 00 10 00"), err: ErrProtocolError},
		goldenCase{name: "CONNACK missing property length", raw: hx("20 02 00 00"), err: ErrMalformedPacket},
		goldenCase{name: "CONNACK property not allowed: topic alias", raw: pk(0x20, "00 00 03 23 0001"), err: ErrProtocolError},
		goldenCase{name: "CONNACK maximum QoS 2 [5.0 §3.2.2.3.4]", raw: pk(0x20, "00 00 02 24 02"), err: ErrProtocolError},
		goldenCase{name: "CONNACK session present with failure [MQTT-3.2.2-6]", raw: hx("20 03 01 80 00"), err: ErrProtocolError},
	)...)

	// PUBLISH.
	addAll(x3(
		goldenCase{name: "PUBLISH QoS 0", raw: pk(0x30, "0003 'a/b' | 'hello'"),
			want: &Publish{Topic: "a/b", Payload: []byte("hello")}},
		goldenCase{name: "PUBLISH QoS 1 retain", raw: pk(0x33, "0001 't' | 0007 | 'x'"),
			want: &Publish{QoS: 1, Retain: true, Topic: "t", PacketID: 7, Payload: []byte("x")}},
		goldenCase{name: "PUBLISH QoS 2 DUP, empty payload", raw: pk(0x3c, "0001 't' | 0102"),
			want: &Publish{Dup: true, QoS: 2, Topic: "t", PacketID: 0x102}},
		goldenCase{name: "PUBLISH empty topic [MQTT-4.7.3-1]", raw: pk(0x30, "0000 'x'"), err: ErrMalformedPacket},
	))
	addAll(xall(
		goldenCase{name: "PUBLISH QoS 3 [MQTT-3.3.1-4]", raw: pk(0x36, "0001 't' 0001"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH DUP with QoS 0 [MQTT-3.3.1-2]", raw: pk(0x38, "0001 't'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH packet id 0 [MQTT-2.3.1-1]", raw: pk(0x32, "0001 't' 0000 00"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH topic with + [MQTT-3.3.2-2]", raw: pk(0x30, "0003 'a/+'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic with # [MQTT-3.3.2-2]", raw: pk(0x30, "0001 '#'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH UTF-8 topic with + after its first multi-byte character [MQTT-3.3.2-2]", raw: pk(0x30, "0004 c3a9 '/+'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH UTF-8 topic with # after U+0000 [MQTT-1.5.3-2]", raw: pk(0x30, "0003 'a' 00 '#'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic truncated", raw: hx("30 03 00 05 61"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic length truncated", raw: hx("30 01 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH packet id truncated", raw: pk(0x32, "0001 't' 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic invalid UTF-8 [MQTT-1.5.3-1]", raw: pk(0x30, "0001 ff"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic surrogate U+D800 [MQTT-1.5.3-1]", raw: pk(0x30, "0003 eda080"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic U+0000 [MQTT-1.5.3-2]", raw: pk(0x30, "0003 'a' 00 'b'"), err: ErrMalformedPacket},
	))
	add(tag(V5,
		goldenCase{name: "PUBLISH QoS 1 properties, two subscription ids",
			raw: pk(0x32, "0001 't' | 0001 | 0f | 01 01 | 02 0000003c | 0b 01 | 0b 8001 | 23 0005 | 'p'"),
			want: &Publish{QoS: 1, Topic: "t", PacketID: 1, Payload: []byte("p"), Properties: P(
				PropPayloadFormatIndicator, 1, PropMessageExpiryInterval, 60,
				PropSubscriptionIdentifier, 1, PropSubscriptionIdentifier, 128, PropTopicAlias, 5)}},
		goldenCase{name: "PUBLISH empty topic with topic alias [5.0 §3.3.2.1]",
			raw:  pk(0x30, "0000 | 03 23 0001 | 'x'"),
			want: &Publish{Payload: []byte("x"), Properties: P(PropTopicAlias, 1)}},
		goldenCase{name: "PUBLISH string, binary and user properties",
			raw: pk(0x30, "0001 't' | 17 | 03 0004 'text' | 08 0001 'r' | 09 0002 0102 | 26 0001 'a' 0001 'b'"),
			want: &Publish{Topic: "t", Properties: P(PropContentType, "text", PropResponseTopic, "r",
				PropCorrelationData, []byte{1, 2}, PropUserProperty, UserProperty{"a", "b"})}},
		goldenCase{name: "PUBLISH empty correlation data, two user properties",
			raw: pk(0x30, "0001 't' | 0f | 09 0000 | 26 0001 'a' 0001 'b' | 26 0000 0000"),
			want: &Publish{Topic: "t", Properties: P(PropCorrelationData, []byte(nil),
				PropUserProperty, UserProperty{"a", "b"}, PropUserProperty, UserProperty{})}},
		goldenCase{name: "PUBLISH missing property length", raw: pk(0x30, "0001 't'"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH topic alias 0 [MQTT-3.3.2-8]", raw: pk(0x30, "0001 't' 03 23 0000"), err: TopicAliasInvalid},
		goldenCase{name: "PUBLISH subscription id 0 [5.0 §3.3.2.3.8]", raw: pk(0x30, "0001 't' 02 0b 00"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH payload format 2 [5.0 §3.3.2.3.2]", raw: pk(0x30, "0001 't' 02 01 02"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH property not allowed: session expiry [5.0 table 2-4]", raw: pk(0x30, "0001 't' 05 11 00000001"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH duplicate topic alias [5.0 §3.3.2.3.4]", raw: pk(0x30, "0001 't' 06 23 0001 23 0002"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH duplicate content type [5.0 §3.3.2.3.9]", raw: pk(0x30, "0001 't' 08 03 0001 'a' 03 0001 'b'"), err: ErrProtocolError},
		goldenCase{name: "PUBLISH property length beyond packet", raw: pk(0x30, "0001 't' 05 01"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH property length VBI truncated", raw: pk(0x30, "0001 't' 80"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH property length VBI of 5 bytes [5.0 §1.5.5]", raw: pk(0x30, "0001 't' ffffffff7f"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH subscription id VBI truncated", raw: pk(0x30, "0001 't' 02 0b 80"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH property value truncated", raw: pk(0x30, "0001 't' 02 02 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH user property value truncated", raw: pk(0x30, "0001 't' 05 26 0000 0001"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH unknown property 0x00", raw: pk(0x30, "0001 't' 01 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBLISH content type invalid UTF-8 [MQTT-1.5.3-1]", raw: pk(0x30, "0001 't' 04 03 0001 80"), err: ErrMalformedPacket},
	)...)

	// PUBACK, PUBREC, PUBREL, PUBCOMP.
	addAll(xall(
		goldenCase{name: "PUBACK", raw: hx("40 02 0001"), want: &Puback{PacketID: 1}},
		goldenCase{name: "PUBREC", raw: hx("50 02 0002"), want: &Pubrec{PacketID: 2}},
		goldenCase{name: "PUBREL", raw: hx("62 02 0003"), want: &Pubrel{PacketID: 3}},
		goldenCase{name: "PUBCOMP", raw: hx("70 02 fffe"), want: &Pubcomp{PacketID: 0xfffe}},
		goldenCase{name: "PUBACK packet id 0 [MQTT-2.3.1-1]", raw: hx("40 02 0000"), err: ErrProtocolError},
		goldenCase{name: "PUBREL packet id 0 [MQTT-2.3.1-1]", raw: hx("62 02 0000"), err: ErrProtocolError},
		goldenCase{name: "PUBACK truncated", raw: hx("40 01 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBCOMP empty", raw: hx("70 00"), err: ErrMalformedPacket},
	))
	addAll(x3(
		goldenCase{name: "PUBACK remaining length 3 [3.1.1 §3.4.1]", raw: hx("40 03 0001 00"), err: ErrMalformedPacket},
		goldenCase{name: "PUBREC remaining length 4 [3.1.1 §3.5.1]", raw: hx("50 04 0001 00 00"), err: ErrMalformedPacket},
	))
	add(tag(V5,
		goldenCase{name: "PUBACK reason code only [5.0 §3.4.2.1]", raw: hx("40 03 0001 10"),
			want: &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}},
		goldenCase{name: "PUBREC reason code and reason string", raw: pk(0x50, "0001 80 | 04 1f 0001 'e'"),
			want: &Pubrec{PacketID: 1, ReasonCode: UnspecifiedError, Properties: P(PropReasonString, "e")}},
		goldenCase{name: "PUBREL packet identifier not found", raw: hx("62 03 0001 92"),
			want: &Pubrel{PacketID: 1, ReasonCode: PacketIdentifierNotFound}},
		goldenCase{name: "PUBCOMP success with empty properties", raw: hx("70 04 0001 00 00"),
			want: &Pubcomp{PacketID: 1}, noncanon: true},
		goldenCase{name: "PUBACK success with user property", raw: pk(0x40, "0001 00 | 05 26 0000 0000"),
			want: &Puback{PacketID: 1, Properties: P(PropUserProperty, UserProperty{})}},
		goldenCase{name: "PUBACK invalid reason code 0x01 [5.0 §3.4.2.1]", raw: hx("40 03 0001 01"), err: ErrProtocolError},
		goldenCase{name: "PUBREL invalid reason code 0x10 [5.0 §3.6.2.1]", raw: hx("62 03 0001 10"), err: ErrProtocolError},
		goldenCase{name: "PUBACK property not allowed: topic alias", raw: pk(0x40, "0001 00 03 23 0001"), err: ErrProtocolError},
		goldenCase{name: "PUBACK property length beyond packet", raw: pk(0x40, "0001 00 03 1f"), err: ErrMalformedPacket},
		goldenCase{name: "PUBACK trailing bytes after properties", raw: pk(0x40, "0001 00 00 00"), err: ErrMalformedPacket},
	)...)

	// SUBSCRIBE.
	addAll(x3(
		goldenCase{name: "SUBSCRIBE two filters", raw: pk(0x82, "000a | 0003 'a/b' 01 | 0001 '#' 02"),
			want: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}, {Filter: "#", QoS: 2}}}},
		goldenCase{name: "SUBSCRIBE reserved option bits [MQTT-3.8.3-4]", raw: pk(0x82, "0001 0001 't' 04"), err: ErrMalformedPacket},
	))
	for _, v := range []Version{V31, V311, V5} {
		pp := propsIf(v) // the 5.0 property length after the packet id
		addAll(tag(v,
			goldenCase{name: "SUBSCRIBE no filter [MQTT-3.8.3-3]", raw: pk(0x82, "0001"+pp), err: ErrProtocolError},
			goldenCase{name: "SUBSCRIBE packet id 0 [MQTT-2.3.1-1]", raw: pk(0x82, "0000"+pp+"0001 't' 00"), err: ErrProtocolError},
			goldenCase{name: "SUBSCRIBE empty filter [MQTT-4.7.3-1]", raw: pk(0x82, "0001"+pp+"0000 00"), err: ErrMalformedPacket},
			goldenCase{name: "SUBSCRIBE filter invalid UTF-8 [MQTT-1.5.3-1]", raw: pk(0x82, "0001"+pp+"0001 c0 00"), err: ErrMalformedPacket},
			goldenCase{name: "SUBSCRIBE options missing", raw: pk(0x82, "0001"+pp+"0001 't'"), err: ErrMalformedPacket},
			goldenCase{name: "SUBSCRIBE packet id truncated", raw: pk(0x82, "00"), err: ErrMalformedPacket},
		))
	}
	add(tag(V5,
		goldenCase{name: "SUBSCRIBE options and subscription id",
			raw: pk(0x82, "0002 | 02 0b 05 | 0003 'a/+' 2e (RH 2, RAP, NL, QoS 2) | 0001 'b' 10 (RH 1)"),
			want: &Subscribe{PacketID: 2, Properties: P(PropSubscriptionIdentifier, 5), Subscriptions: []Subscription{
				{Filter: "a/+", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "b", RetainHandling: 1}}}},
		goldenCase{name: "SUBSCRIBE reserved option bits [MQTT-3.8.3-5]", raw: pk(0x82, "0001 00 0001 't' 40"), err: ErrMalformedPacket},
		goldenCase{name: "SUBSCRIBE retain handling 3 [5.0 §3.8.3.1]", raw: pk(0x82, "0001 00 0001 't' 30"), err: ErrProtocolError},
		goldenCase{name: "SUBSCRIBE QoS 3 [5.0 §3.8.3.1]", raw: pk(0x82, "0001 00 0001 't' 03"), err: ErrMalformedPacket},
		goldenCase{name: "SUBSCRIBE two subscription ids [5.0 §3.8.2.1.2]", raw: pk(0x82, "0001 04 0b 01 0b 02 0001 't' 00"), err: ErrProtocolError},
		goldenCase{name: "SUBSCRIBE subscription id VBI of 5 bytes", raw: pk(0x82, "0001 06 0b ffffffff7f 0001 't' 00"), err: ErrMalformedPacket},
		goldenCase{name: "SUBSCRIBE property not allowed: reason string", raw: pk(0x82, "0001 04 1f 0001 'x' 0001 't' 00"), err: ErrProtocolError},
	)...)
	addAll(x3(goldenCase{name: "SUBSCRIBE QoS 3 [MQTT-3.8.3-4]", raw: pk(0x82, "0001 0001 't' 03"), err: ErrMalformedPacket}))

	// SUBACK.
	addAll(x3(
		goldenCase{name: "SUBACK", raw: pk(0x90, "0001 | 00 01 02 80"),
			want: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0, 1, 2, 0x80}}},
		goldenCase{name: "SUBACK return code 3 [MQTT-3.9.3-2]", raw: pk(0x90, "0001 03"), err: ErrMalformedPacket},
		goldenCase{name: "SUBACK return code 0x87 [MQTT-3.9.3-2]", raw: pk(0x90, "0001 87"), err: ErrMalformedPacket},
		goldenCase{name: "SUBACK no return code", raw: pk(0x90, "0001"), err: ErrProtocolError},
	))
	add(tag(V5,
		goldenCase{name: "SUBACK reason codes and reason string", raw: pk(0x90, "0003 | 04 1f 0001 'x' | 00 97 a2"),
			want: &Suback{PacketID: 3, ReasonCodes: []ReasonCode{Success, QuotaExceeded, WildcardSubscriptionsNotSupported},
				Properties: P(PropReasonString, "x")}},
		goldenCase{name: "SUBACK invalid reason code 0x10 [5.0 §3.9.3]", raw: pk(0x90, "0003 00 10"), err: ErrProtocolError},
		goldenCase{name: "SUBACK no reason code [MQTT-3.8.4-6]", raw: pk(0x90, "0003 00"), err: ErrProtocolError},
		goldenCase{name: "SUBACK packet id 0", raw: pk(0x90, "0000 00 00"), err: ErrProtocolError},
	)...)

	// UNSUBSCRIBE.
	addAll(x3(
		goldenCase{name: "UNSUBSCRIBE", raw: pk(0xa2, "0005 | 0003 'a/b' | 0001 'c'"),
			want: &Unsubscribe{PacketID: 5, Filters: []string{"a/b", "c"}}},
	))
	for _, v := range []Version{V31, V311, V5} {
		pp := propsIf(v)
		addAll(tag(v,
			goldenCase{name: "UNSUBSCRIBE no filter [MQTT-3.10.3-2]", raw: pk(0xa2, "0005"+pp), err: ErrProtocolError},
			goldenCase{name: "UNSUBSCRIBE packet id 0 [MQTT-2.3.1-1]", raw: pk(0xa2, "0000"+pp+"0001 't'"), err: ErrProtocolError},
			goldenCase{name: "UNSUBSCRIBE empty filter [MQTT-4.7.3-1]", raw: pk(0xa2, "0005"+pp+"0000"), err: ErrMalformedPacket},
			goldenCase{name: "UNSUBSCRIBE filter truncated", raw: pk(0xa2, "0005"+pp+"0002 't'"), err: ErrMalformedPacket},
		))
	}
	add(tag(V5,
		goldenCase{name: "UNSUBSCRIBE user property", raw: pk(0xa2, "0006 | 07 26 0001 'k' 0001 'v' | 0001 't'"),
			want: &Unsubscribe{PacketID: 6, Filters: []string{"t"}, Properties: P(PropUserProperty, UserProperty{"k", "v"})}},
		goldenCase{name: "UNSUBSCRIBE property not allowed: reason string", raw: pk(0xa2, "0006 04 1f 0001 'x' 0001 't'"), err: ErrProtocolError},
	)...)

	// UNSUBACK.
	addAll(x3(
		goldenCase{name: "UNSUBACK", raw: hx("b0 02 0009"), want: &Unsuback{PacketID: 9}},
		goldenCase{name: "UNSUBACK remaining length 3 [3.1.1 §3.11.1]", raw: hx("b0 03 0009 00"), err: ErrMalformedPacket},
		goldenCase{name: "UNSUBACK packet id 0", raw: hx("b0 02 0000"), err: ErrProtocolError},
	))
	add(tag(V5,
		goldenCase{name: "UNSUBACK reason codes", raw: pk(0xb0, "0009 | 00 | 00 11"),
			want: &Unsuback{PacketID: 9, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
		goldenCase{name: "UNSUBACK reason string", raw: pk(0xb0, "0009 | 04 1f 0001 'x' | 87"),
			want: &Unsuback{PacketID: 9, ReasonCodes: []ReasonCode{NotAuthorized}, Properties: P(PropReasonString, "x")}},
		goldenCase{name: "UNSUBACK no reason code [MQTT-3.11.3-1]", raw: pk(0xb0, "0009 00"), err: ErrProtocolError},
		goldenCase{name: "UNSUBACK invalid reason code 0x10 [5.0 §3.11.3]", raw: pk(0xb0, "0009 00 10"), err: ErrProtocolError},
		goldenCase{name: "UNSUBACK missing properties", raw: hx("b0 02 0009"), err: ErrMalformedPacket},
	)...)

	// PINGREQ, PINGRESP.
	addAll(xall(
		goldenCase{name: "PINGREQ", raw: hx("c0 00"), want: &Pingreq{}},
		goldenCase{name: "PINGRESP", raw: hx("d0 00"), want: &Pingresp{}},
		goldenCase{name: "PINGREQ remaining length 1 [3.1.1 §3.12.1]", raw: hx("c0 01 00"), err: ErrMalformedPacket},
		goldenCase{name: "PINGRESP remaining length 1 [3.1.1 §3.13.1]", raw: hx("d0 01 00"), err: ErrMalformedPacket},
	))

	// DISCONNECT.
	addAll(xall(goldenCase{name: "DISCONNECT", raw: hx("e0 00"), want: &Disconnect{}}))
	addAll(x3(goldenCase{name: "DISCONNECT remaining length 1 [3.1.1 §3.14.1]", raw: hx("e0 01 00"), err: ErrMalformedPacket}))
	add(tag(V5,
		goldenCase{name: "DISCONNECT reason code only [5.0 §3.14.2.2.1]", raw: hx("e0 01 04"),
			want: &Disconnect{ReasonCode: DisconnectWithWill}},
		goldenCase{name: "DISCONNECT server reference", raw: pk(0xe0, "9c | 04 1c 0001 's'"),
			want: &Disconnect{ReasonCode: UseAnotherServer, Properties: P(PropServerReference, "s")}},
		goldenCase{name: "DISCONNECT session expiry", raw: pk(0xe0, "00 | 05 11 0000000a"),
			want: &Disconnect{Properties: P(PropSessionExpiryInterval, 10)}},
		goldenCase{name: "DISCONNECT success, empty properties", raw: hx("e0 02 00 00"),
			want: &Disconnect{}, noncanon: true},
		goldenCase{name: "DISCONNECT invalid reason code 0x01 [5.0 §3.14.2.1]", raw: hx("e0 01 01"), err: ErrProtocolError},
		goldenCase{name: "DISCONNECT property not allowed: topic alias", raw: pk(0xe0, "00 03 23 0001"), err: ErrProtocolError},
		goldenCase{name: "DISCONNECT trailing byte", raw: hx("e0 03 00 00 00"), err: ErrMalformedPacket},
	)...)

	// AUTH.
	add(tag(V5,
		goldenCase{name: "AUTH empty [5.0 §3.15.2.1]", raw: hx("f0 00"), want: &Auth{}},
		goldenCase{name: "AUTH continue, method and data", raw: pk(0xf0, "18 | 0c 15 0005 'SCRAM' 16 0001 01"),
			want: &Auth{ReasonCode: ContinueAuthentication, Properties: P(PropAuthenticationMethod, "SCRAM", PropAuthenticationData, []byte{1})}},
		goldenCase{name: "AUTH re-authenticate", raw: hx("f0 01 19"), want: &Auth{ReasonCode: ReAuthenticate}},
		goldenCase{name: "AUTH invalid reason code 0x80 [5.0 §3.15.2.1]", raw: hx("f0 01 80"), err: ErrProtocolError},
		goldenCase{name: "AUTH property not allowed: session expiry", raw: pk(0xf0, "18 05 11 00000001"), err: ErrProtocolError},
		goldenCase{name: "AUTH duplicate method", raw: pk(0xf0, "18 08 15 0001 'a' 15 0001 'b'"), err: ErrProtocolError},
	)...)
	return cs
}

// propsIf returns an empty 5.0 property length for V5, else nothing.
func propsIf(v Version) string {
	if v == V5 {
		return " 00 "
	}
	return " "
}

func encodeVersion(p Packet, v Version) Version {
	if c, ok := p.(*Connect); ok {
		return c.Version
	}
	return v
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want one wrapping %v", err, want)
	}
	var rc ReasonCode
	if !errors.As(err, &rc) || rc != want.(ReasonCode) {
		t.Fatalf("errors.As(%v) = %v, want %v", err, rc, want)
	}
}

func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range goldenCases() {
		if seen[tc.name] {
			t.Errorf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			if (tc.want == nil) == (tc.err == nil) {
				t.Fatal("case needs exactly one of want and err")
			}
			got, err := ReadPacket(bytes.NewReader(tc.raw), tc.v, 0)
			h, body := splitPacket(tc.raw)
			got2, err2 := Decode(h, body, tc.v)
			if _, _, _, perr := ParseFixedHeader(tc.raw, 0); perr != nil {
				got2, err2 = nil, perr
			}
			if tc.err != nil {
				checkErr(t, err, tc.err)
				checkErr(t, err2, tc.err)
				if got != nil || got2 != nil {
					t.Fatalf("got packet %#v with error", got)
				}
				return
			}
			if err != nil || err2 != nil {
				t.Fatalf("ReadPacket: %v; Decode: %v", err, err2)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ReadPacket:\n got %#v\nwant %#v", got, tc.want)
			}
			if !reflect.DeepEqual(got2, tc.want) {
				t.Fatalf("Decode:\n got %#v\nwant %#v", got2, tc.want)
			}
			enc, err := tc.want.Append([]byte{0xaa}, encodeVersion(tc.want, tc.v))
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if enc[0] != 0xaa {
				t.Fatal("Append overwrote dst")
			}
			enc = enc[1:]
			if !tc.noncanon && !bytes.Equal(enc, tc.raw) {
				t.Fatalf("Append:\n got % x\nwant % x", enc, tc.raw)
			}
			if p, ok := tc.want.(*Publish); ok && p.Size(tc.v) != len(enc) {
				t.Fatalf("Size = %d, encoded %d bytes", p.Size(tc.v), len(enc))
			}
			again, err := ReadPacket(bytes.NewReader(enc), tc.v, 0)
			if err != nil || !reflect.DeepEqual(again, tc.want) {
				t.Fatalf("re-decode: %v\n got %#v\nwant %#v", err, again, tc.want)
			}
		})
	}
}

// TestGoldenCoverage checks that the table has a valid case for every packet
// type in every version where it exists.
func TestGoldenCoverage(t *testing.T) {
	have := map[Version]map[Type]bool{V31: {}, V311: {}, V5: {}}
	for _, tc := range goldenCases() {
		if tc.want != nil {
			have[tc.v][tc.want.Type()] = true
		}
	}
	for v, types := range have {
		for typ := CONNECT; typ <= AUTH; typ++ {
			if typ == AUTH && v != V5 {
				continue
			}
			if !types[typ] {
				t.Errorf("%v: no valid golden case for %v", v, typ)
			}
		}
	}
}
