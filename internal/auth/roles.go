package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/petrel-mqtt/petrel/internal/topic"
)

// Activities a role grants.
const (
	ActivityPublish   = "publish"
	ActivitySubscribe = "subscribe"
	ActivityBoth      = "both"
)

// Placeholders substituted in role topic filters at CONNECT.
const (
	PlaceholderTenant   = "{tenantId}"
	PlaceholderClientID = "{clientId}"
	PlaceholderUsername = "{username}"
)

// Role is a named set of privileges, as in the seeds' CAAS roles: what the
// client may do (Activity), at which QoS at most, whether it may publish
// retained messages, and on which topic filters. Topics and Deny may hold
// the placeholders {tenantId}, {clientId} and {username}. A deny filter
// wins over every allow of the same activity, in any role: a publish to a
// denied topic, and a subscription whose every topic is denied, are
// refused; a subscription that shares only some topics with a deny filter
// is granted with it attached, and the broker does not deliver its topics.
type Role struct {
	Name     string
	Activity string // publish, subscribe or both
	MaxQoS   byte
	Retain   bool
	Topics   []string
	Deny     []string
}

// DefaultRoles returns the roles shipped with Petrel (the seeds' consumer
// roles and a publisher role for gateways); a configuration that lists
// roles replaces them all.
func DefaultRoles() []Role {
	return []Role{
		{Name: "BUBBLE_UP_READ_CONSUMER", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/read/#"}},
		{Name: "BUBBLE_UP_ALARM_CONSUMER", Activity: ActivitySubscribe, MaxQoS: 1, Topics: []string{"{tenantId}/alert/#"}},
		{Name: "GATEWAY_PUBLISHER", Activity: ActivityPublish, MaxQoS: 1, Topics: []string{"{tenantId}/#"}},
	}
}

// ValidateRole checks a role definition: its name, activity, QoS, and that
// every filter is a valid topic filter once substituted.
func ValidateRole(r Role) error {
	if r.Name == "" {
		return fmt.Errorf("auth: role without a name")
	}
	switch r.Activity {
	case ActivityPublish, ActivitySubscribe, ActivityBoth:
	default:
		return fmt.Errorf("auth: role %s: activity %q is not one of publish, subscribe, both", r.Name, r.Activity)
	}
	if r.MaxQoS > 2 {
		return fmt.Errorf("auth: role %s: max_qos %d out of range 0..2", r.Name, r.MaxQoS)
	}
	if len(r.Topics) == 0 {
		return fmt.Errorf("auth: role %s: no topics", r.Name)
	}
	for _, list := range [][]string{r.Topics, r.Deny} {
		for _, f := range list {
			s := substitute(f, "t", "c", "u")
			if _, _, shared, _ := topic.ParseShared(s); shared {
				return fmt.Errorf("auth: role %s: filter %q: $share is chosen by the client, not the role", r.Name, f)
			}
			if err := topic.ValidateFilter(s); err != nil {
				return fmt.Errorf("auth: role %s: filter %q: %w", r.Name, f, err)
			}
			if rest := strings.NewReplacer(PlaceholderTenant, "", PlaceholderClientID, "", PlaceholderUsername, "").Replace(f); strings.ContainsAny(rest, "{}") {
				return fmt.Errorf("auth: role %s: filter %q: unknown placeholder (want {tenantId}, {clientId}, {username})", r.Name, f)
			}
		}
	}
	return nil
}

func substitute(f, tenant, clientID, username string) string {
	if !strings.Contains(f, "{") {
		return f
	}
	return strings.NewReplacer(PlaceholderTenant, tenant, PlaceholderClientID, clientID, PlaceholderUsername, username).Replace(f)
}

// safeLevel reports whether s may be substituted into a topic filter: it
// must be one whole non-empty level with no wildcard and no U+0000.
func safeLevel(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#/\x00")
}

// grant is one substituted filter of a role.
type grant struct {
	filter string
	maxQoS byte
	retain bool
}

// grants is what an identity may do, compiled at CONNECT from its roles
// with the placeholders substituted. It is immutable.
type grants struct {
	pub, sub         []grant
	denyPub, denySub []string
}

// compile substitutes the identity's values into its roles' filters. It
// fails when a value a filter uses is not a safe level: an empty tenant,
// or one holding a wildcard or separator, would widen the grant.
func compile(roles map[string]Role, names []string, tenant, clientID, username string) (*grants, error) {
	g := &grants{}
	for _, name := range names {
		r, ok := roles[name]
		if !ok {
			continue
		}
		for _, list := range [][]string{r.Topics, r.Deny} {
			for _, f := range list {
				if strings.Contains(f, PlaceholderTenant) && !safeLevel(tenant) {
					return nil, fmt.Errorf("%w: tenant %q cannot be substituted in role %s", errUnsafeTenant, tenant, r.Name)
				}
				if strings.Contains(f, PlaceholderClientID) && !safeLevel(clientID) {
					return nil, fmt.Errorf("%w: client id %q cannot be substituted in role %s", errUnsafeClientID, clientID, r.Name)
				}
				if strings.Contains(f, PlaceholderUsername) && !safeLevel(username) {
					return nil, fmt.Errorf("%w: username %q cannot be substituted in role %s", errUnsafeUsername, username, r.Name)
				}
			}
		}
		pub := r.Activity == ActivityPublish || r.Activity == ActivityBoth
		sub := r.Activity == ActivitySubscribe || r.Activity == ActivityBoth
		for _, f := range r.Topics {
			gr := grant{filter: substitute(f, tenant, clientID, username), maxQoS: r.MaxQoS, retain: r.Retain}
			if pub {
				g.pub = append(g.pub, gr)
			}
			if sub {
				g.sub = append(g.sub, gr)
			}
		}
		for _, f := range r.Deny {
			d := substitute(f, tenant, clientID, username)
			if pub {
				g.denyPub = append(g.denyPub, d)
			}
			if sub {
				g.denySub = append(g.denySub, d)
			}
		}
	}
	return g, nil
}

// publishLimits returns, for a topic name, the highest QoS a publish may
// use, and the highest with retain set; -1 means not allowed.
func (g *grants) publishLimits(name string) (maxQoS, maxRetainQoS int8) {
	maxQoS, maxRetainQoS = -1, -1
	for _, d := range g.denyPub {
		if topic.Match(d, name) {
			return -1, -1
		}
	}
	for _, gr := range g.pub {
		if !topic.Match(gr.filter, name) {
			continue
		}
		maxQoS = max(maxQoS, int8(gr.maxQoS))
		if gr.retain {
			maxRetainQoS = max(maxRetainQoS, int8(gr.maxQoS))
		}
	}
	return maxQoS, maxRetainQoS
}

// subscribeDecision decides a subscription to filter, which may be a
// shared subscription (its inner filter is what is checked). It returns
// the highest QoS that may be granted, or -1 when refused, and the deny
// filters the granted subscription overlaps (nil for none). A filter is
// allowed only when one allow filter covers every topic it can match; it
// is refused when one deny filter covers it, and a deny filter that only
// shares some topics with it is returned, for the broker to filter those
// topics at delivery.
func (g *grants) subscribeDecision(filter string) (maxQoS int8, deny []string) {
	_, inner, shared, err := topic.ParseShared(filter)
	if err != nil {
		return -1, nil
	}
	if !shared {
		inner = filter
		if topic.ValidateFilter(inner) != nil {
			return -1, nil
		}
	}
	best := int8(-1)
	for _, gr := range g.sub {
		if topic.Covers(gr.filter, inner) {
			best = max(best, int8(gr.maxQoS))
		}
	}
	if best < 0 {
		return -1, nil
	}
	for _, d := range g.denySub {
		if topic.Covers(d, inner) {
			return -1, nil // entirely inside a denied filter
		}
		if topic.Overlaps(d, inner) && !slices.Contains(deny, d) {
			deny = append(deny, d)
		}
	}
	return best, slices.Clip(deny)
}

// receivable reports whether a message published to name may be delivered
// to the identity: an allow filter of a subscribing role matches it and no
// deny filter does.
func (g *grants) receivable(name string) bool {
	if topic.MatchAny(g.denySub, name) {
		return false
	}
	for _, gr := range g.sub {
		if topic.Match(gr.filter, name) {
			return true
		}
	}
	return false
}
