package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// startAuth begins 5.0 enhanced authentication for a CONNECT that named an
// Authentication Method [MQTT-4.12.0-1].
func (c *conn) startAuth(ctx context.Context, pc *pendingConnect, data []byte) error {
	ea, ok := c.b.opts().Authenticator.(EnhancedAuthenticator)
	if !ok {
		// No enhanced authentication configured [MQTT-4.12.0-1].
		return c.refuseAuth(pc, packet.BadAuthenticationMethod, fmt.Errorf("authentication method %q not supported", pc.method))
	}
	ex, err := ea.StartAuth(ctx, &pc.ci, pc.method)
	if err != nil {
		return c.refuseAuth(pc, refusalCode(err, packet.BadAuthenticationMethod), fmt.Errorf("authentication method %q: %w", pc.method, err))
	}
	pc.ex = ex
	return c.stepAuth(ctx, pc, data)
}

// stepAuth feeds client data to the exchange: it completes the CONNECT,
// continues with AUTH 0x18, or refuses.
func (c *conn) stepAuth(ctx context.Context, pc *pendingConnect, data []byte) error {
	serverData, ident, err := pc.ex.Step(ctx, data)
	if err != nil {
		return c.refuseAuth(pc, refusalCode(err, packet.NotAuthorized), fmt.Errorf("enhanced authentication: %w", err))
	}
	if ident != nil {
		return c.finishConnect(pc, ident, serverData)
	}
	c.pending = pc
	c.send(authPacket(packet.ContinueAuthentication, pc.method, serverData)) // [MQTT-4.12.0-2]
	return nil
}

func authPacket(code packet.ReasonCode, method string, data []byte) *packet.Auth {
	a := &packet.Auth{ReasonCode: code}
	a.Properties.AuthenticationMethod = method
	a.Properties.Set(packet.PropAuthenticationMethod)
	if len(data) > 0 {
		a.Properties.AuthenticationData = data
		a.Properties.Set(packet.PropAuthenticationData)
	}
	return a
}

// handleAuth takes an AUTH packet: the next step of an exchange during
// CONNECT, or a re-authentication (0x19) once connected [MQTT-4.12.1-1].
func (c *conn) handleAuth(p *packet.Auth) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts().ConnectTimeout)
	defer cancel()
	method := p.Properties.AuthenticationMethod
	if !c.connected {
		pc := c.pending
		if pc == nil || p.ReasonCode != packet.ContinueAuthentication || method != pc.method {
			// AUTH only continues the exchange the CONNECT began, with its
			// method [MQTT-4.12.0-5]; before CONNACK the refusal is a CONNACK.
			return c.refuse(packet.ProtocolError, fmt.Errorf("AUTH %v with method %q during CONNECT with method %q", p.ReasonCode, method, pc.method))
		}
		c.pending = nil
		return c.stepAuth(ctx, pc, p.Properties.AuthenticationData)
	}
	switch {
	case p.ReasonCode == packet.ReAuthenticate && c.pending == nil:
	case p.ReasonCode == packet.ContinueAuthentication && c.pending != nil:
	default:
		return protocolError("AUTH reason %v out of sequence", p.ReasonCode)
	}
	if c.authMethod == "" || method != c.authMethod {
		// Re-authentication uses the CONNECT's method [MQTT-4.12.1-1].
		return protocolError("re-authentication with method %q, connected with %q", method, c.authMethod)
	}
	pc := c.pending
	if p.ReasonCode == packet.ReAuthenticate {
		ea := c.b.opts().Authenticator.(EnhancedAuthenticator) // c.authMethod is set only for one
		ex, err := ea.StartAuth(ctx, &ConnectInfo{ClientID: c.clientID, Username: c.id.Username, Version: c.version,
			RemoteAddr: c.nc.RemoteAddr(), Listener: c.li.name}, method)
		if err != nil {
			return reauthFailed(err)
		}
		pc = &pendingConnect{method: method, ex: ex}
	}
	c.pending = nil
	serverData, ident, err := pc.ex.Step(ctx, p.Properties.AuthenticationData)
	if err != nil {
		return reauthFailed(err)
	}
	if ident == nil {
		c.pending = pc
		c.send(authPacket(packet.ContinueAuthentication, method, serverData))
		return nil
	}
	if ident.Tenant != c.id.Tenant || ident.Username != c.id.Username {
		// Re-authentication renews credentials; it never changes who the
		// connection is (DESIGN.md section 3): nothing of the other
		// identity is applied [MQTT-4.12.1-2].
		return &closeError{code: packet.NotAuthorized, reason: reasonNotAuthorized,
			err: fmt.Errorf("re-authentication as tenant %q user %q, connected as tenant %q user %q", ident.Tenant, ident.Username, c.id.Tenant, c.id.Username)}
	}
	c.reauthenticated(ident)
	c.send(authPacket(packet.Success, method, serverData))
	return nil
}

// reauthenticated replaces the connection's identity after a successful
// re-authentication of the same tenant and principal: new roles and a new
// credential expiry. Its session and subscriptions stay as they are.
func (c *conn) reauthenticated(ident *Identity) {
	if ident.ClientID == "" {
		ident.ClientID = c.clientID
	}
	c.id = ident
	// The session's subscriptions and queue are authorized again when the
	// identity changed (its roles, say).
	c.b.reauthorize(c.sess, ident, causeReauth)
	if !ident.ExpiresAt.IsZero() {
		c.watchExpiry(ident.ExpiresAt)
	}
}

// reauthFailed closes a connection whose re-authentication failed, with
// DISCONNECT and the failure's code [MQTT-4.12.1-2].
func reauthFailed(err error) error {
	return &closeError{code: refusalCode(err, packet.NotAuthorized), reason: reasonNotAuthorized, err: fmt.Errorf("re-authentication: %w", err)}
}

// watchExpiry disconnects the client when its credentials expire (5.0:
// DISCONNECT 0x87). A later re-authentication moves the deadline.
func (c *conn) watchExpiry(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.expiry != nil {
		c.mu.expiry.Stop()
	}
	d := time.Until(at)
	tenant := c.id.Tenant // c.id belongs to the reader
	c.mu.expiry = time.AfterFunc(max(d, 0), func() {
		c.b.log.Info("credentials expired; disconnecting", AuditKey, AuditCredentialsExpired, "tenant", tenant, "client", c.clientID)
		c.closeWith(packet.NotAuthorized, reasonNotAuthorized)
	})
}
