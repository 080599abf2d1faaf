// Package topic validates and matches MQTT topic names and topic filters
// (MQTT 3.1.1 section 4.7, MQTT 5.0 sections 4.7 and 4.8) and provides
// Trie, a concurrent subscription index from topic filters to subscribers.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the maximum length in bytes of a topic name or filter: the
// length prefix of an MQTT UTF-8 string is a 16-bit integer.
const MaxLen = 65535

// Sentinel errors returned (possibly wrapped with detail) by the validators.
var (
	// ErrEmpty reports a zero-length topic name or filter [MQTT-4.7.3-1].
	ErrEmpty = errors.New("topic: empty topic")
	// ErrWildcardName reports a '+' or '#' in a topic name [MQTT-3.3.2-2].
	ErrWildcardName = errors.New("topic: wildcard in topic name")
	// ErrInvalidFilter reports a malformed topic filter
	// [MQTT-4.7.1-2] [MQTT-4.7.1-3].
	ErrInvalidFilter = errors.New("topic: invalid topic filter")
	// ErrTooLong reports a topic name or filter longer than 65535 bytes.
	ErrTooLong = errors.New("topic: topic too long")
	// ErrInvalidShare reports a malformed shared subscription filter
	// [MQTT-4.8.2-1] [MQTT-4.8.2-2].
	ErrInvalidShare = errors.New("topic: invalid shared subscription")
	// ErrInvalidName reports a topic name containing U+0000 [MQTT-1.5.4-2].
	ErrInvalidName = errors.New("topic: invalid topic name")
)

// sharePrefix introduces a shared subscription filter (MQTT 5.0 4.8.2).
const sharePrefix = "$share/"

// ValidateName checks a topic name as used in PUBLISH: it must be non-empty
// [MQTT-4.7.3-1], at most 65535 bytes, contain no wildcard characters
// [MQTT-3.3.2-2] and no U+0000 [MQTT-1.5.4-2]. UTF-8 well-formedness is left
// to the packet decoder.
func ValidateName(name string) error {
	if len(name) == 0 {
		return ErrEmpty
	}
	if len(name) > MaxLen {
		return fmt.Errorf("%w: %d bytes", ErrTooLong, len(name))
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '+', '#':
			return fmt.Errorf("%w: %q at byte %d", ErrWildcardName, name[i], i)
		case 0:
			return fmt.Errorf("%w: U+0000 at byte %d", ErrInvalidName, i)
		}
	}
	return nil
}

// ValidateFilter checks a topic filter as used in SUBSCRIBE and UNSUBSCRIBE:
// it must be non-empty [MQTT-4.7.3-1], at most 65535 bytes and contain no
// U+0000; '#' may appear only as the whole last level [MQTT-4.7.1-2] and '+'
// only as a whole level [MQTT-4.7.1-3]. A "$share/" prefix is not treated
// specially; use ParseShared for that.
func ValidateFilter(filter string) error {
	if len(filter) == 0 {
		return ErrEmpty
	}
	if len(filter) > MaxLen {
		return fmt.Errorf("%w: %d bytes", ErrTooLong, len(filter))
	}
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case 0:
			return fmt.Errorf("%w: U+0000 at byte %d", ErrInvalidFilter, i)
		case '+':
			if (i > 0 && filter[i-1] != '/') || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("%w: '+' must occupy a whole level (byte %d) [MQTT-4.7.1-3]", ErrInvalidFilter, i)
			}
		case '#':
			if (i > 0 && filter[i-1] != '/') || i+1 != len(filter) {
				return fmt.Errorf("%w: '#' must be the whole last level (byte %d) [MQTT-4.7.1-2]", ErrInvalidFilter, i)
			}
		}
	}
	return nil
}

// ParseShared splits a shared subscription filter "$share/{group}/{filter}".
// For a filter without the "$share/" prefix it returns shared=false and a
// nil error without validating anything. For a shared filter the group must
// be non-empty and contain no '+', '#' or '/' [MQTT-4.8.2-2], and the inner
// filter must be present and valid [MQTT-4.8.2-1]; otherwise the error wraps
// ErrInvalidShare (and, for a bad inner filter, the ValidateFilter error).
func ParseShared(filter string) (group, inner string, shared bool, err error) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return "", "", false, nil
	}
	rest := filter[len(sharePrefix):]
	group, inner, ok := strings.Cut(rest, "/")
	if group == "" {
		return "", "", true, fmt.Errorf("%w: empty share name [MQTT-4.8.2-1]", ErrInvalidShare)
	}
	if strings.ContainsAny(group, "+#\x00") {
		return "", "", true, fmt.Errorf("%w: share name %q contains a wildcard [MQTT-4.8.2-2]", ErrInvalidShare, group)
	}
	if !ok || inner == "" {
		return "", "", true, fmt.Errorf("%w: missing topic filter [MQTT-4.8.2-1]", ErrInvalidShare)
	}
	if err := ValidateFilter(inner); err != nil {
		return "", "", true, fmt.Errorf("%w: %w", ErrInvalidShare, err)
	}
	return group, inner, true, nil
}

// Match reports whether the topic name matches the topic filter. Both are
// assumed valid (see ValidateName and ValidateFilter). A filter whose first
// level is '+' or '#' does not match a name starting with '$'
// [MQTT-4.7.2-1], and "x/#" matches "x" (the '#' also matches the parent
// level) [MQTT-4.7.1-2]. Match does not allocate.
func Match(filter, name string) bool {
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		n, nrest, nmore := strings.Cut(name, "/")
		if f != "+" && f != n {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			return frest == "#"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}

// Levels returns the number of levels of a topic name or filter, that is the
// number of '/' separators plus one. The empty string has one (empty) level.
func Levels(s string) int {
	return strings.Count(s, "/") + 1
}
