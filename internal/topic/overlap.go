package topic

import "strings"

// wildFirst reports whether filter f starts with a wildcard level: such a
// filter never matches a topic name starting with '$' [MQTT-4.7.2-1].
func wildFirst(f string) bool {
	return strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")
}

// Overlaps reports whether some topic name matches both filters a and b
// (valid filters, without a $share prefix). "A/+" and "+/B" overlap (on
// "A/B"), "A" and "A/#" do ('#' also matches the parent level
// [MQTT-4.7.1-2]), "A" and "A/+" do not; a filter starting with a
// wildcard overlaps no filter whose first level is a literal starting with
// '$', since it matches no topic starting with '$' [MQTT-4.7.2-1]. It
// does not allocate.
func Overlaps(a, b string) bool {
	if (strings.HasPrefix(a, "$") && wildFirst(b)) || (strings.HasPrefix(b, "$") && wildFirst(a)) {
		return false // [MQTT-4.7.2-1]
	}
	for first := true; ; first = false {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		if (!amore || !bmore) && first && (al == "" || bl == "") {
			// The common topic would be the empty name, which is no
			// topic [MQTT-4.7.3-1]: "+" and "/#" share none.
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			// a ends here: the topic ending here matches b only when b's
			// rest is '#', which also matches the parent [MQTT-4.7.1-2].
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// Covers reports whether every topic name that filter f can match is also
// matched by filter a (both valid filters, without a $share prefix):
// "A/read/#" covers "A/read/+/gas" and "A/read" but not "+/read/#"; only
// '#' at the same level covers a '#'; '+' is covered only by '+' or '#'.
// "#" covers everything except topics starting with '$', which a filter
// starting with a wildcard never matches [MQTT-4.7.2-1]. It does not
// allocate.
func Covers(a, f string) bool {
	if strings.HasPrefix(f, "$") && wildFirst(a) {
		return false // [MQTT-4.7.2-1]
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		fl, frest, fmore := strings.Cut(f, "/")
		if al == "#" {
			return true // a matches this level and everything below, the parent too
		}
		switch fl {
		case "#":
			// f matches the parent and every level below: only '#' covers that.
			return false
		case "+":
			if al != "+" {
				return false
			}
		default:
			if al != "+" && al != fl {
				return false
			}
		}
		switch {
		case !fmore && !amore:
			return true
		case !fmore:
			// f ends here; a needs more levels, unless they are "#",
			// which also matches the parent [MQTT-4.7.1-2].
			return arest == "#"
		case !amore:
			return false
		}
		a, f = arest, frest
	}
}

// MatchAny reports whether name matches one of filters (a deny list, say).
// A nil or empty list matches nothing.
func MatchAny(filters []string, name string) bool {
	for _, f := range filters {
		if Match(f, name) {
			return true
		}
	}
	return false
}
