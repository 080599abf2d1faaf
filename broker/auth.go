package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"time"

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
	// PeerCertificates is the client's verified certificate chain on a
	// TLS listener (leaf first), nil otherwise.
	PeerCertificates []*x509.Certificate
	// CertUsername is true when Username was taken from the client
	// certificate (a listener with cert_username set), not from CONNECT.
	CertUsername bool
	Connect      *packet.Connect
}

// Identity is who a connection is, once authenticated: the tenant and roles
// the authorization decisions are made on. The broker never modifies it
// once the Authenticator returned it; a 5.0 re-authentication replaces it
// whole. A session remembers the identity that last held it: when another
// one takes it over (Tenant, Username, ClientID or Roles differ) its
// subscriptions and the messages queued for it are authorized again.
type Identity struct {
	Tenant   string
	Username string
	ClientID string
	Roles    []string
	// Attrs carries authenticator-specific facts for the Authorizer.
	Attrs map[string]string
	// Method names how the client authenticated ("password", "jwt",
	// "certificate", "scram", "anonymous"; "none" for AllowAll), and
	// Principal who vouched for it (the user, the certificate name, a
	// token's client_id or id), for the logs and the audit trail. Neither
	// decides anything; "" when the Authenticator does not say.
	Method, Principal string
	// ExpiresAt, when not zero, is when the credentials expire (a JWT's
	// exp): the broker disconnects the client then (5.0: DISCONNECT 0x87,
	// not authorized). Authenticators set it only when configured to.
	ExpiresAt time.Time
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

// A QuickAuthenticator is an Authenticator whose Authenticate returns at
// once, never waiting (no network, no password hashing) and never using
// its context: the broker then calls it without a deadline, which saves a
// timer per connection. Any other Authenticator's context carries the
// connect timeout.
type QuickAuthenticator interface {
	Authenticator
	AuthenticatesQuickly() bool
}

// EnhancedAuthenticator is an Authenticator that also takes part in 5.0
// enhanced authentication: a CONNECT with an Authentication Method, and
// re-authentication with AUTH 0x19 [MQTT-4.12.0-1]. The broker drives the
// exchange of AUTH packets; the implementation only computes.
type EnhancedAuthenticator interface {
	Authenticator
	// StartAuth begins an exchange for method. It returns
	// packet.BadAuthenticationMethod when it does not support method.
	StartAuth(ctx context.Context, ci *ConnectInfo, method string) (AuthExchange, error)
}

// AuthExchange is one enhanced authentication in progress. It is used by
// one goroutine at a time.
type AuthExchange interface {
	// Step takes the client's Authentication Data (from CONNECT or AUTH
	// 0x18) and returns the server's. A non-nil identity means the client
	// is authenticated (serverData, if any, goes in CONNACK or AUTH 0x00);
	// otherwise the broker sends AUTH 0x18 with serverData and waits. An
	// error ends the exchange: a packet.ReasonCode (NotAuthorized,
	// BadUsernameOrPassword, BadAuthenticationMethod) chooses the code.
	Step(ctx context.Context, data []byte) (serverData []byte, id *Identity, err error)
}

// Authorizer decides what an authenticated connection may do. Its methods
// are called concurrently, from connection readers (PUBLISH, SUBSCRIBE,
// CONNECT, AUTH) and from Broker.Reauthorize, and must not block on I/O.
// id is never nil and never modified by the broker once the connection
// holds it; an Authorizer may keep it only as a key (a cache handle).
//
// The broker asks once per subscription, not per message: what
// CanSubscribe returns is kept with the subscription and applied to every
// message routed to it. Subscriptions are asked again when their policy
// may have changed: when a session is resumed by another identity (or
// after a restart, when its last identity is not known), on a 5.0
// re-authentication that changes the identity, and on
// Broker.Reauthorize, which the owner of the Authorizer calls after its
// policy changed.
type Authorizer interface {
	// CanPublish reports whether id may publish to topic with qos and retain.
	CanPublish(id *Identity, topic string, qos byte, retain bool) bool
	// CanSubscribe decides a subscription of id to filter (as sent, with
	// a $share/{group}/ prefix if any) at the requested qos.
	CanSubscribe(id *Identity, filter string, qos byte) SubscribeDecision
	// CanReceive reports whether id may receive a message published to
	// topic (a topic name). The broker asks it for messages that were
	// queued for a session before its identity or the policy changed,
	// never for a message being routed.
	CanReceive(id *Identity, topic string) bool
}

// A CredentialChecker is an Authorizer that can tell whether the
// credentials a connection authenticated with are still accepted under
// the policy in force: its user still exists, in the same tenant, with
// the same password; its token still verifies under the keys in force.
// Broker.Reauthorize asks it for every connected client and closes the
// connections it refuses (5.0: DISCONNECT 0x87, not authorized; 3.x:
// closed). It is called concurrently and must not block on I/O.
type CredentialChecker interface {
	CredentialsValid(id *Identity) bool
}

// SubscribeDecision is an Authorizer's answer to a subscription.
type SubscribeDecision struct {
	// OK grants the subscription; false refuses it (SUBACK 0x80 in 3.x,
	// 0x87 in 5.0 [MQTT-3.9.3-2]).
	OK bool
	// MaxQoS is the highest QoS that may be granted; the broker grants
	// min(requested, MaxQoS) [MQTT-3.8.4-6].
	MaxQoS byte
	// Deny lists topic filters whose topics the subscription must not
	// deliver although its filter matches them: the denied filters that
	// overlap a granted wildcard ("#" granted with "test/nosubscribe"
	// denied). nil when none do, which costs nothing per message. The
	// broker keeps the slice for the subscription's life and never writes
	// to it; the Authorizer must not modify it after returning it (it may
	// return the same slice for many decisions).
	Deny []string
}

// AllowAll authenticates and authorizes everyone; it is the default when
// Options names neither. Petrel's command line only uses it on loopback.
type AllowAll struct{}

// Authenticate accepts every client as itself, in no tenant.
func (AllowAll) Authenticate(_ context.Context, ci *ConnectInfo) (*Identity, error) {
	return &Identity{Username: ci.Username, ClientID: ci.ClientID, Method: "none"}, nil
}

// AuthenticatesQuickly is true: AllowAll never waits (QuickAuthenticator).
func (AllowAll) AuthenticatesQuickly() bool { return true }

// CanPublish allows every publish.
func (AllowAll) CanPublish(*Identity, string, byte, bool) bool { return true }

// CanSubscribe grants every subscription at the requested QoS.
func (AllowAll) CanSubscribe(_ *Identity, _ string, qos byte) SubscribeDecision {
	return SubscribeDecision{OK: true, MaxQoS: qos}
}

// CanReceive allows every message.
func (AllowAll) CanReceive(*Identity, string) bool { return true }

// peerCertificates finds the TLS state under nc (through wrappers with a
// NetConn method) and returns the verified client certificate chain.
func peerCertificates(nc net.Conn) []*x509.Certificate {
	for i := 0; i < 8 && nc != nil; i++ {
		if cs, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
			st := cs.ConnectionState()
			if len(st.VerifiedChains) == 0 {
				return nil
			}
			return st.VerifiedChains[0]
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
}

// certUsername names a client by its certificate: "cn" the subject common
// name, "subject" the whole subject.
func certUsername(mode string, certs []*x509.Certificate) (string, bool) {
	if len(certs) == 0 {
		return "", false
	}
	switch mode {
	case "cn":
		return certs[0].Subject.CommonName, certs[0].Subject.CommonName != ""
	case "subject":
		return certs[0].Subject.String(), true
	}
	return "", false
}
