package diskstore

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The key space (storage-engine.md §6). Every key starts with keySpace and
// a tag byte; integers are big-endian so that byte order is numeric order.
//
//	01 'S' ClientID                  -> session  {cid, version, expiry, disconnected at}
//	01 'U' cid(8) TopicFilter        -> subscription
//	01 'Q' cid(8) seq(8)             -> queued delivery (message, QoS, sub ids, ...)
//	01 'I' cid(8) 00 seq(8)          -> outbound inflight {packet id, state} of delivery seq
//	01 'I' cid(8) 01 packet_id(2)    -> inbound QoS 2 packet id awaiting PUBREL
//	01 'R' TopicName                 -> retained message
//	01 'M' name                      -> meta: "version" (schema), "cid" (next cid)
//
// The outbound inflight record is keyed by seq rather than by packet id
// (as the research note sketched) because OpDequeue names only the Seq.
const (
	keySpace    = 0x01
	tagSession  = 'S'
	tagSub      = 'U'
	tagQueue    = 'Q'
	tagInflight = 'I'
	tagRetained = 'R'
	tagMeta     = 'M'

	inflightOut = 0x00
	inflightIn  = 0x01
)

// Meta record names.
const (
	metaVersion = "version"
	metaCid     = "cid"
)

func tagKey(dst []byte, tag byte) []byte { return append(dst, keySpace, tag) }

func sessionKey(dst []byte, clientID string) []byte {
	return append(tagKey(dst, tagSession), clientID...)
}

func cidKey(dst []byte, tag byte, cid uint64) []byte {
	return binary.BigEndian.AppendUint64(tagKey(dst, tag), cid)
}

func subKey(dst []byte, cid uint64, filter string) []byte {
	return append(cidKey(dst, tagSub, cid), filter...)
}

func queueKey(dst []byte, cid, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(cidKey(dst, tagQueue, cid), seq)
}

func outKey(dst []byte, cid, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(cidKey(dst, tagInflight, cid), inflightOut), seq)
}

func inKey(dst []byte, cid uint64, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(append(cidKey(dst, tagInflight, cid), inflightIn), pid)
}

func retainedKey(dst []byte, topic string) []byte {
	return append(tagKey(dst, tagRetained), topic...)
}

func metaKey(name string) []byte { return append(tagKey(nil, tagMeta), name...) }

// tagRange returns the bounds of every key with tag.
func tagRange(tag byte) (lo, hi []byte) {
	return []byte{keySpace, tag}, []byte{keySpace, tag + 1}
}

// cidRange returns the bounds of the keys with tag of session cid.
func cidRange(tag byte, cid uint64) (lo, hi []byte) {
	return cidKey(nil, tag, cid), cidKey(nil, tag, cid+1)
}

// formatKey returns a printable form of key for error messages, such as
// Q/cid=3/seq=42 or S/"client-1".
func formatKey(key []byte) string {
	if len(key) < 2 || key[0] != keySpace {
		return "raw/" + strconv.Quote(string(key))
	}
	tag, rest := key[1], key[2:]
	str := func(b []byte) string {
		if utf8.Valid(b) {
			return strconv.Quote(string(b))
		}
		return fmt.Sprintf("%x", b)
	}
	switch tag {
	case tagSession, tagRetained, tagMeta:
		return string(tag) + "/" + str(rest)
	case tagSub, tagQueue, tagInflight:
		if len(rest) < 8 {
			break
		}
		cid, rest := binary.BigEndian.Uint64(rest), rest[8:]
		switch {
		case tag == tagSub:
			return fmt.Sprintf("U/cid=%d/%s", cid, str(rest))
		case tag == tagQueue && len(rest) == 8:
			return fmt.Sprintf("Q/cid=%d/seq=%d", cid, binary.BigEndian.Uint64(rest))
		case tag == tagInflight && len(rest) == 9 && rest[0] == inflightOut:
			return fmt.Sprintf("I/cid=%d/out/seq=%d", cid, binary.BigEndian.Uint64(rest[1:]))
		case tag == tagInflight && len(rest) == 3 && rest[0] == inflightIn:
			return fmt.Sprintf("I/cid=%d/in/pid=%d", cid, binary.BigEndian.Uint16(rest[1:]))
		}
	}
	return fmt.Sprintf("%c/%x", tag, rest)
}
