package auth

import (
	"testing"

	"github.com/petrel-mqtt/petrel/broker"
)

// TestUnknownIdentityCompiledOncePerRun: an identity without a live cache
// handle (the copy the broker keeps for an offline session) gets its
// grants compiled once for a run of calls with it, not at each call; a
// reload, or another identity, compiles again.
func TestUnknownIdentityCompiledOncePerRun(t *testing.T) {
	s := newService(t, Config{})
	id := &broker.Identity{Tenant: "A", ClientID: "c", Roles: []string{"BUBBLE_UP_READ_CONSUMER"}, Attrs: map[string]string{attrHandle: "gone"}}
	e := s.cur.Load()
	st := s.cache.lookup(id, e)
	if st.g == nil || !st.g.receivable("A/read/x") {
		t.Fatal("grants not compiled for the identity")
	}
	if again := s.cache.lookup(id, e); again != st {
		t.Fatal("a second call with the same unknown identity compiled its grants again")
	}
	other := *id
	if s.cache.lookup(&other, e) == st {
		t.Fatal("another identity got the first one's state")
	}
	if err := s.Reload(Config{}); err != nil {
		t.Fatal(err)
	}
	if s.cache.lookup(id, s.cur.Load()) == st {
		t.Fatal("the state of the old configuration was used after a reload")
	}
}
