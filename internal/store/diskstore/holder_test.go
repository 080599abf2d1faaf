package diskstore

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/packet"
)

// TestSessionRecordBeforeHolders: a session record as written before
// wills' holders were stored (flags without bit 2: uv cid, version, uv
// expiry, flags 1, disconnected at, will delay, will) still loads, with
// its will and no holder; one written now carries the holder and reads
// back equal.
func TestSessionRecordBeforeHolders(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	will := &broker.StoredMessage{Topic: "A/will", Payload: []byte("gone"), QoS: 1}
	old := []byte{formatV1}
	old = binary.AppendUvarint(old, 7)            // cid
	old = append(old, byte(packet.V5))            // version
	old = binary.AppendUvarint(old, 600)          // expiry
	old = append(old, 1)                          // flags: disconnected at
	old = binary.AppendVarint(old, at.UnixNano()) // disconnected at
	old = binary.AppendUvarint(old, 30)           // will delay
	old, err := appendMessage(old, will)          // the will
	if err != nil {
		t.Fatal(err)
	}
	cid, s, err := decodeSession(old)
	if err != nil {
		t.Fatalf("a record written before holders: %v", err)
	}
	if cid != 7 || s.Will == nil || s.Will.Topic != "A/will" || s.WillDelay != 30 || !s.DisconnectedAt.Equal(at) || s.Holder != nil {
		t.Fatalf("decoded %d %+v (will %+v)", cid, s, s.Will)
	}

	s.Holder = &broker.StoredHolder{Tenant: "A", Username: "u", Roles: []string{"R"}, Method: "jwt", Principal: "jti:1",
		Attrs: map[string]string{"auth.method": "jwt"}}
	v, err := encodeSession(nil, cid, s)
	if err != nil {
		t.Fatal(err)
	}
	_, back, err := decodeSession(v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Holder, s.Holder) || back.Will.Topic != s.Will.Topic {
		t.Fatalf("round trip: %+v, want %+v", back.Holder, s.Holder)
	}
}
