package cluster

import (
	"errors"
	"strings"
)

// Subject roots. A topic starting with '$' lives under rootDollar, every
// other topic under rootLive, so that a filter whose first level is a
// wildcard (subscribed under rootLive only) never matches a '$' topic
// [MQTT-4.7.2-1]. Retained messages live under rootRetained.
const (
	rootLive     = "m"
	rootDollar   = "d"
	rootRetained = "r"
)

// emptyLevel is the token of an empty topic level ("a//b" -> "m.a.=.b").
const emptyLevel = "="

// maxTopicBytes is the longest topic the codec accepts: the longest MQTT
// topic (a UTF-8 string has a 16-bit length). Escaping can triple it, so
// the longest subject is 3*65535 plus a root: maxControlLine leaves room
// for it and the protocol arguments around it.
const maxTopicBytes = 65535

// maxControlLine is the embedded server's max_control_line: a protocol
// line (PUB, SUB, MSG, and route RMSG/RS+ lines) must fit in it, or the
// server closes the connection that sent it. 256 KiB holds the subject of
// the longest legal MQTT topic with every byte escaped (196,607 bytes)
// and the line's other arguments.
const maxControlLine = 256 << 10

// ErrTopicTooLong is returned for a topic longer than 65535 bytes: its
// subject might not fit in a NATS protocol line.
var ErrTopicTooLong = errors.New("cluster: topic too long for a subject")

// ErrBadSubject is returned when a subject is not one the codec produced.
var ErrBadSubject = errors.New("cluster: not a Petrel subject")

const hexDigits = "0123456789ABCDEF"

// plain reports whether byte b stands for itself in a subject token: it
// is not a separator, a wildcard, whitespace or the escape character.
func plain(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// appendLevel appends the token of one topic level: bytes outside
// [A-Za-z0-9_-] become =XX (upper-case hex), an empty level becomes "=".
func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, emptyLevel...)
	}
	for i := 0; i < len(level); i++ {
		b := level[i]
		if plain(b) {
			dst = append(dst, b)
			continue
		}
		dst = append(dst, '=', hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

// appendTokens appends the tokens of topic, one per level, separated by
// dots.
func appendTokens(dst []byte, topic string) []byte {
	for {
		level, rest, more := strings.Cut(topic, "/")
		dst = appendLevel(dst, level)
		if !more {
			return dst
		}
		dst = append(dst, '.')
		topic = rest
	}
}

// topicRoot is the root of a topic's live subject.
func topicRoot(topic string) string {
	if strings.HasPrefix(topic, "$") {
		return rootDollar
	}
	return rootLive
}

// TopicSubject returns the live subject of an MQTT topic name: a valid
// NATS literal subject, from which SubjectTopic gives the topic back.
func TopicSubject(topic string) (string, error) {
	return rootSubject(topicRoot(topic), topic)
}

// retainedSubject returns the subject of topic's retained message.
func retainedSubject(topic string) (string, error) {
	return rootSubject(rootRetained, topic)
}

func rootSubject(root, topic string) (string, error) {
	if len(topic) > maxTopicBytes {
		return "", ErrTopicTooLong
	}
	b := make([]byte, 0, len(root)+1+len(topic)+8)
	b = append(b, root...)
	b = append(b, '.')
	return string(appendTokens(b, topic)), nil
}

// SubjectTopic returns the topic of a live subject (TopicSubject's
// inverse).
func SubjectTopic(subject string) (string, error) {
	root, rest, ok := strings.Cut(subject, ".")
	if !ok {
		return "", ErrBadSubject
	}
	topic, err := decodeTokens(rest)
	if err != nil {
		return "", err
	}
	// The root must be the one TopicSubject would have chosen, or two
	// subjects would give one topic.
	if root != topicRoot(topic) {
		return "", ErrBadSubject
	}
	return topic, nil
}

// retainedTopic returns the topic of a retained message's subject.
func retainedTopic(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, rootRetained+".")
	if !ok {
		return "", ErrBadSubject
	}
	return decodeTokens(rest)
}

// decodeTokens turns dot-separated tokens back into a topic. It accepts
// only what appendTokens produces (canonical: upper-case hex, no escape
// of a plain byte), so the mapping is a bijection.
func decodeTokens(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for first := true; ; first = false {
		tok, rest, more := strings.Cut(s, ".")
		if !first {
			b.WriteByte('/')
		}
		if err := decodeToken(&b, tok); err != nil {
			return "", err
		}
		if !more {
			return b.String(), nil
		}
		s = rest
	}
}

func decodeToken(b *strings.Builder, tok string) error {
	if tok == emptyLevel {
		return nil
	}
	if tok == "" {
		return ErrBadSubject
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		if c != '=' || i+2 >= len(tok) {
			return ErrBadSubject
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return ErrBadSubject
		}
		v := byte(hi<<4 | lo)
		if plain(v) || v == '/' {
			// Not canonical: a plain byte stands for itself, and '/'
			// separates levels (it never reaches a token): two subjects
			// would give one topic.
			return ErrBadSubject
		}
		b.WriteByte(v)
		i += 2
	}
	return nil
}

// unhex returns the value of an upper-case hex digit, -1 for anything else.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// FilterSubjects returns the NATS subscription subjects of an MQTT topic
// filter (without a $share prefix): a topic matches filter iff its live
// subject matches one of them. '+' becomes '*'; a trailing '#' gives two
// subjects, the parent and parent.>, since "a/#" also matches "a"
// [MQTT-4.7.1-2]; a bare "#" is m.> (never a '$' topic [MQTT-4.7.2-1]).
// The subjects never overlap: a message matches at most one of them.
func FilterSubjects(filter string) ([]string, error) {
	if len(filter) > maxTopicBytes {
		return nil, ErrTopicTooLong
	}
	root := rootLive
	if strings.HasPrefix(filter, "$") {
		root = rootDollar
	}
	b := make([]byte, 0, len(root)+1+len(filter)+8)
	b = append(b, root...)
	for lvl := filter; ; {
		level, rest, more := strings.Cut(lvl, "/")
		switch level {
		case "#":
			if more {
				return nil, ErrBadSubject
			}
			if len(b) == len(root) {
				return []string{root + ".>"}, nil
			}
			parent := string(b)
			return []string{parent, parent + ".>"}, nil
		case "+":
			b = append(b, ".*"...)
		default:
			b = append(b, '.')
			b = appendLevel(b, level)
		}
		if !more {
			return []string{string(b)}, nil
		}
		lvl = rest
	}
}
