package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/petrel-mqtt/petrel/packet"
)

// maxClientID31 is MQTT 3.1's client identifier limit (3.1 section 3.1).
const maxClientID31 = 23

// handleConnect authenticates the client, takes over an existing connection
// with the same client id, attaches the session and answers CONNACK.
func (c *conn) handleConnect(p *packet.Connect) error {
	c.version = p.Version
	c.mu.Lock()
	c.mu.version = p.Version
	c.mu.Unlock()

	id, assigned := p.ClientID, false
	switch p.Version {
	case packet.V31:
		if len(id) == 0 || len(id) > maxClientID31 {
			// MQTT 3.1: the client identifier is 1 to 23 characters (3.1 section 3.1).
			return c.refuse(packet.ClientIdentifierNotValid, fmt.Errorf("3.1 client id length %d not in 1..23", len(id)))
		}
	case packet.V311:
		if id == "" && !p.CleanStart {
			// An empty client id needs clean session [MQTT-3.1.3-7] [MQTT-3.1.3-8].
			return c.refuse(packet.ClientIdentifierNotValid, errors.New("empty client id without clean session [MQTT-3.1.3-8]"))
		}
	}
	if id == "" {
		id, assigned = newClientID(), true // [MQTT-3.1.3-6]
	}
	c.clientID = id
	c.clean = p.CleanStart
	if p.Version == packet.V5 {
		// A 5.0 session ends with the connection unless it has an expiry interval.
		c.clean = p.Properties.SessionExpiryInterval == 0
	}
	ka := time.Duration(p.KeepAlive) * time.Second
	serverKA := false
	if max := c.b.opts().MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
		if p.Version != packet.V5 {
			return c.refuse(packet.ServerUnavailable, fmt.Errorf("keepalive %v above the maximum %v", ka, max))
		}
		p.KeepAlive, serverKA = uint16(max/time.Second), true // [MQTT-3.2.2-21]
	}
	if min := c.b.opts().MinKeepAlive; min > 0 && ka > 0 && ka < min {
		return c.refuse(packet.ServerUnavailable, fmt.Errorf("keepalive %v below the minimum %v", ka, min))
	}
	if c.b.overConnectionLimit(id) {
		code := packet.ServerUnavailable
		if p.Version == packet.V5 {
			code = packet.ServerBusy
		}
		return c.refuse(code, fmt.Errorf("connection limit %d reached", c.b.opts().MaxConnections))
	}
	if p.KeepAlive > 0 {
		// Close after one and a half keepalive periods without a packet,
		// counted in milliseconds [MQTT-3.1.2-24].
		c.readWait = time.Duration(p.KeepAlive) * 1500 * time.Millisecond
	}
	if p.Will != nil {
		if err := c.b.validateName(p.Will.Topic); err != nil {
			return &closeError{code: packet.TopicNameInvalid, reason: reasonProtocol, err: fmt.Errorf("will topic: %w", err)}
		}
	}

	ci := &ConnectInfo{
		ClientID: id, Username: p.Username, HasUser: p.UsernameFlag,
		Password: p.Password, HasPass: p.PasswordFlag, Version: p.Version,
		RemoteAddr: c.nc.RemoteAddr(), Listener: c.listener, Connect: p,
		PeerCertificates: peerCertificates(c.nc),
	}
	if c.certUsername != "" {
		name, ok := certUsername(c.certUsername, ci.PeerCertificates)
		if !ok {
			return c.refuse(packet.NotAuthorized, errors.New("listener names clients by certificate and none was presented"))
		}
		ci.Username, ci.HasUser, ci.CertUsername = name, true, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts().ConnectTimeout)
	ident, err := c.b.opts().Authenticator.Authenticate(ctx, ci)
	cancel()
	if err != nil {
		code := packet.ServerUnavailable
		var rc packet.ReasonCode
		if errors.As(err, &rc) && rc.IsError() {
			code = rc
		}
		return c.refuse(code, fmt.Errorf("authentication: %w", err))
	}
	if ident.ClientID == "" {
		ident.ClientID = id
	}
	c.id = ident
	if p.Will != nil && !c.b.opts().Authorizer.CanPublish(ident, p.Will.Topic, p.Will.QoS, p.Will.Retain) {
		return c.refuse(packet.NotAuthorized, fmt.Errorf("will topic %q not authorized", p.Will.Topic))
	}
	c.will = p.Will

	// Only now, authenticated, may the client take over an existing
	// connection with its id [MQTT-3.1.4-2].
	sess, present := c.b.attach(c, id, p.CleanStart)
	c.sess = sess
	c.connected = true

	ack := &packet.Connack{SessionPresent: present} // [MQTT-3.2.2-1] [MQTT-3.2.2-2]
	if p.Version == packet.V5 && assigned {
		ack.Properties.AssignedClientIdentifier = id // [MQTT-3.2.2-16]
		ack.Properties.Set(packet.PropAssignedClientIdentifier)
	}
	if serverKA {
		ack.Properties.ServerKeepAlive = p.KeepAlive // [MQTT-3.2.2-21]
		ack.Properties.Set(packet.PropServerKeepAlive)
	}
	// The CONNACK is queued before the session is handed to the writer, so
	// it is the first packet the client receives [MQTT-3.2.0-1].
	c.send(ack)
	c.mu.Lock()
	c.mu.sess = sess
	c.mu.Unlock()
	sess.Attach(c.kick, c.b.opts().MaxInflight)
	c.kick()
	c.b.log.Info("client connected", "client", id, "remote", c.remote, "listener", c.listener, "version", p.Version.String(),
		"clean", p.CleanStart, "keepalive", p.KeepAlive, "session_present", present, "username", ci.Username)
	return nil
}

// refuse answers CONNACK with code and closes the connection
// [MQTT-3.2.2-5].
func (c *conn) refuse(code packet.ReasonCode, err error) error {
	c.sendAndClose(&packet.Connack{ReasonCode: code}, reasonRefused)
	c.b.log.Info("connection refused", "remote", c.remote, "listener", c.listener, "version", c.version.String(), "code", code.String(), "err", err)
	return &closeError{code: code, reason: reasonRefused, err: err}
}

// newClientID returns a unique identifier for a client that sent none.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	return "petrel-" + hex.EncodeToString(b[:])
}
