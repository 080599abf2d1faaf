package broker

import (
	"context"
	"net"

	"github.com/petrel-mqtt/petrel/packet"
)

// ConnectInfo is what an Authenticator sees of a connecting client.
type ConnectInfo struct {
	ClientID   string
	Username   string
	HasUser    bool
	Password   []byte
	HasPass    bool
	Version    packet.Version
	RemoteAddr net.Addr
	Listener   string // listener name, "" when unnamed
	Connect    *packet.Connect
}

// Identity is who a connection is, once authenticated: the tenant and roles
// the authorization decisions are made on. It is immutable after CONNECT.
type Identity struct {
	Tenant   string
	Username string
	ClientID string
	Roles    []string
	// Attrs carries authenticator-specific facts for the Authorizer.
	Attrs map[string]string
}

// Authenticator decides whether a CONNECT may proceed. It is called from the
// connection's reader goroutine, concurrently for different connections, and
// must be safe for that. It returns the identity, or an error: a
// packet.ReasonCode (BadUsernameOrPassword, NotAuthorized, ...) chooses the
// CONNACK code; any other error refuses with ServerUnavailable. It must not
// keep ci.Password.
type Authenticator interface {
	Authenticate(ctx context.Context, ci *ConnectInfo) (*Identity, error)
}

// Authorizer decides what an authenticated connection may do. Its methods
// are called on the publish and subscribe paths, concurrently, and must not
// block on I/O. id is never nil.
type Authorizer interface {
	// CanPublish reports whether id may publish to topic with qos and retain.
	CanPublish(id *Identity, topic string, qos byte, retain bool) bool
	// CanSubscribe returns the highest QoS id may be granted on filter, and
	// false when the subscription is refused.
	CanSubscribe(id *Identity, filter string, qos byte) (maxQoS byte, ok bool)
}

// AllowAll authenticates and authorizes everyone; it is the default when
// Options names neither. Petrel's command line only uses it on loopback.
type AllowAll struct{}

// Authenticate accepts every client as itself, in no tenant.
func (AllowAll) Authenticate(_ context.Context, ci *ConnectInfo) (*Identity, error) {
	return &Identity{Username: ci.Username, ClientID: ci.ClientID}, nil
}

// CanPublish allows every publish.
func (AllowAll) CanPublish(*Identity, string, byte, bool) bool { return true }

// CanSubscribe grants every subscription at the requested QoS.
func (AllowAll) CanSubscribe(_ *Identity, _ string, qos byte) (byte, bool) { return qos, true }
