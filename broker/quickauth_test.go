package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
)

// deadlineAuth records whether Authenticate's context had a deadline;
// quickDeadlineAuth is the same as a QuickAuthenticator.
type deadlineAuth struct{ got chan bool }

func (a deadlineAuth) Authenticate(ctx context.Context, ci *broker.ConnectInfo) (*broker.Identity, error) {
	_, has := ctx.Deadline()
	a.got <- has
	return &broker.Identity{Username: ci.Username, ClientID: ci.ClientID}, nil
}

type quickDeadlineAuth struct{ deadlineAuth }

func (quickDeadlineAuth) AuthenticatesQuickly() bool { return true }

// TestAuthenticatorContextDeadline: an ordinary Authenticator's context
// ends with the connect timeout; a QuickAuthenticator is called without a
// deadline (no timer per connection).
func TestAuthenticatorContextDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quick bool
	}{
		{"ordinary", false},
		{"quick", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan bool, 1)
			var auth broker.Authenticator = deadlineAuth{got: got}
			if tc.quick {
				auth = quickDeadlineAuth{deadlineAuth{got: got}}
			}
			_, addr := mqtttest.StartBroker(t, broker.Options{Authenticator: auth, ConnectTimeout: 5 * time.Second})
			connect(t, addr, "deadline-"+tc.name, true) // closed with the test
			select {
			case has := <-got:
				if has == tc.quick {
					t.Fatalf("Authenticate's context has a deadline: %v, want %v", has, !tc.quick)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Authenticate was not called")
			}
		})
	}
}
