package broker

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/petrel-mqtt/petrel/internal/session"
)

// What is delivered is allowed for the identity that receives it under the
// policy in force (DESIGN.md section 3): a subscription is decided once,
// at SUBSCRIBE, and decided again here when the policy or the identity
// holding its session may have changed. Nothing here runs per message.

// Why a session's authorization is checked again (in the log).
const (
	causeReload  = "policy reload"
	causeResume  = "session resumed by another identity"
	causeReauth  = "re-authentication"
	causeRestore = "session restored from the store resumed"
)

// maxOwedRounds bounds the passes over a session's owed messages: each
// pass decides the topics the previous one found undecided, which only
// messages routed meanwhile can add.
const maxOwedRounds = 4

// Reauthorize first closes the connections whose credentials the
// Authorizer, when it is a CredentialChecker, no longer accepts
// (revokeCredentials). It then decides every subscription of every
// session whose holder is
// known (online, or offline with the identity that last held it) again,
// under the policy the Authorizer applies now: a subscription no longer
// allowed is removed (from the session, the subscription index and the
// store), one allowed at a lower QoS is lowered, one whose filter now
// overlaps denied topics stops delivering them; and the messages a session
// still owes its client that the identity may no longer receive are
// removed. Each revocation is logged at WARN and counted
// (Stats.Revocations, Stats.RevokedMessages). Call it after changing the
// policy behind Options.Authorizer (petrel serve does on SIGHUP, after the
// auth service reloaded). Sessions restored from the store, whose holder
// is not known, are decided when a client resumes them. It returns the
// number of subscriptions revoked or narrowed. It is safe to call at any
// time; it holds no broker-wide lock while it asks the Authorizer.
func (b *Broker) Reauthorize() int {
	authz := b.opts().Authorizer
	if _, ok := authz.(AllowAll); ok {
		return 0
	}
	if cc, ok := authz.(CredentialChecker); ok {
		b.revokeCredentials(cc)
	}
	b.mu.Lock()
	all := make([]*session.Session, 0, len(b.mu.sessions))
	for _, s := range b.mu.sessions {
		all = append(all, s)
	}
	b.mu.Unlock()
	n := 0
	for _, s := range all {
		n += b.reauthorize(s, nil, causeReload)
	}
	b.log.Info("subscriptions authorized again", "cause", causeReload, "sessions", len(all), "revoked", n)
	return n
}

// hold makes id the holder of s, which its connection just attached. A
// session resumed from another identity, or from one not known (restored
// from the store), is authorized again for id before it goes online.
func (b *Broker) hold(s *session.Session, id *Identity, present bool) {
	if !present {
		s.Guard.Lock()
		s.Guard.Owner = id
		s.Guard.Unlock()
		return
	}
	b.reauthorize(s, id, causeResume)
}

// rememberHolder keeps, for a session going offline, a copy of the
// identity that held it: Reauthorize checks it while it is offline, and a
// resume by the same identity needs no check. The copy lets the
// connection's own Identity go, and with it what an Authorizer keeps for
// the connection's lifetime (auth.Service's decision caches).
func (b *Broker) rememberHolder(s *session.Session, id *Identity) {
	if id == nil {
		return
	}
	s.Guard.Lock()
	defer s.Guard.Unlock()
	if s.Guard.Owner == id {
		cp := *id
		cp.Roles = slices.Clone(id.Roles)
		cp.Attrs = maps.Clone(id.Attrs)
		s.Guard.Owner = &cp
	}
}

// sameHolder reports whether a and b are the same identity for the
// Authorizer: tenant, username, client id and roles (in any order).
func sameHolder(a, b *Identity) bool {
	if a.Tenant != b.Tenant || a.Username != b.Username || a.ClientID != b.ClientID || len(a.Roles) != len(b.Roles) {
		return false
	}
	ra, rb := slices.Clone(a.Roles), slices.Clone(b.Roles)
	slices.Sort(ra)
	slices.Sort(rb)
	return slices.Equal(ra, rb)
}

// revocation is one subscription removed or narrowed, for the log.
type revocation struct {
	filter, reason string
}

// reauthorize decides s's subscriptions and owed messages again. With id
// set, id becomes s's holder first, and s is checked only when id is not
// the same holder as the previous one (or none was known); with id nil
// the holder known is checked, and nothing is done when none is. It
// returns the number of subscriptions revoked or narrowed.
func (b *Broker) reauthorize(s *session.Session, id *Identity, cause string) int {
	authz := b.opts().Authorizer
	s.Guard.Lock()
	if s.Guard.Ended {
		s.Guard.Unlock()
		return 0
	}
	prev, _ := s.Guard.Owner.(*Identity)
	if id != nil {
		s.Guard.Owner = id
		switch {
		case prev == nil:
			cause = causeRestore
		case sameHolder(prev, id):
			s.Guard.Unlock()
			return 0
		}
	} else if id = prev; id == nil {
		s.Guard.Unlock()
		return 0
	}
	if _, ok := authz.(AllowAll); ok {
		s.Guard.Unlock()
		return 0
	}
	var batch Batch
	revoked := b.recheckLocked(s, id, authz, &batch)
	s.Guard.Unlock()
	b.syncInterest()

	dropped := b.dropUnreceivable(s, id, authz, &batch)
	if batch.Len() > 0 {
		// Not synced, and a failed write is logged and counted by commit:
		// a session comes back from the store with no known holder, and is
		// decided again when resumed.
		_ = b.commit(&batch, false)
	}
	_, client := SplitSessionKey(s.ID)
	for _, r := range revoked {
		b.log.Warn("subscription revoked", "tenant", id.Tenant, "client", client, "filter", r.filter,
			"reason", r.reason, "cause", cause)
	}
	if dropped > 0 {
		b.log.Warn("queued messages revoked", "tenant", id.Tenant, "client", client, "messages", dropped,
			"reason", "not authorized", "cause", cause)
	}
	b.stats.revocations.Add(uint64(len(revoked)))
	b.stats.revokedMessages.Add(uint64(dropped))
	return len(revoked)
}

// recheckLocked asks authz about each of s's subscriptions for id and
// applies the answers to the session and the trie, adding the store
// writes to batch. s.Guard is held. It returns one revocation per
// subscription refused (removed) or narrowed (QoS lowered, topics newly
// denied). A deny list that shrank is updated without counting.
func (b *Broker) recheckLocked(s *session.Session, id *Identity, authz Authorizer, batch *Batch) []revocation {
	stored := b.store != nil && s.Persistent()
	var revoked []revocation
	for _, sub := range s.Subscriptions() {
		key, inner := subKeyOf(s, sub.Filter)
		dec := authz.CanSubscribe(id, sub.Filter, sub.QoS)
		if !dec.OK {
			s.Unsubscribe(sub.Filter)
			b.unsubscribeTrie(inner, key)
			if stored {
				batch.Add(Op{Kind: OpDeleteSubscription, ClientID: s.ID, Filter: sub.Filter})
			}
			revoked = append(revoked, revocation{sub.Filter, "not authorized"})
			continue
		}
		qos := min(sub.QoS, dec.MaxQoS)
		if qos == sub.QoS && slices.Equal(dec.Deny, sub.Deny) {
			continue
		}
		var why []string
		if qos < sub.QoS {
			why = append(why, "granted QoS lowered to "+strconv.Itoa(int(qos)))
		}
		if gained := newDenials(sub.Deny, dec.Deny); gained != nil {
			why = append(why, fmt.Sprintf("topics denied: %q", gained))
		}
		if why != nil {
			revoked = append(revoked, revocation{sub.Filter, strings.Join(why, "; ")})
		}
		changed := sub
		changed.QoS, changed.Deny = qos, dec.Deny
		s.Subscribe(changed)
		_, _, v := subscriberOf(s, changed)
		b.subscribeTrie(inner, key, v)
		if stored && qos != sub.QoS {
			batch.Add(Op{Kind: OpPutSubscription, ClientID: s.ID, Sub: storedSubscription(changed)})
		}
	}
	return revoked
}

// newDenials returns the filters of now not in before, nil for none.
func newDenials(before, now []string) []string {
	var gained []string
	for _, d := range now {
		if !slices.Contains(before, d) {
			gained = append(gained, d)
		}
	}
	return gained
}

// dropUnreceivable removes from s the messages it owes its client that id
// may not receive (Authorizer.CanReceive, asked once per topic, outside
// every lock), adding the removals of stored ones to batch. Messages
// routed while it runs were matched against the updated subscriptions;
// the few matched just before are caught by the next pass (at most
// maxOwedRounds). It returns how many it removed.
func (b *Broker) dropUnreceivable(s *session.Session, id *Identity, authz Authorizer, batch *Batch) int {
	verdict := make(map[string]bool)
	n := 0
	for round := 0; ; round++ {
		dropped, seqs, unknown := s.DropOwed(verdict)
		n += dropped
		for _, seq := range seqs {
			batch.Add(Op{Kind: OpDequeue, ClientID: s.ID, Seq: seq})
		}
		if len(unknown) == 0 || round == maxOwedRounds {
			return n
		}
		for _, t := range unknown {
			verdict[t] = authz.CanReceive(id, t)
		}
	}
}
