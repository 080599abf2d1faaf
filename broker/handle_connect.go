package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/internal/session"
	"github.com/petrel-mqtt/petrel/packet"
)

// maxClientID31 is MQTT 3.1's client identifier limit (3.1 section 3.1).
const maxClientID31 = 23

// pendingConnect is a CONNECT whose 5.0 enhanced authentication is under
// way: the reader accepts AUTH packets until the exchange ends.
type pendingConnect struct {
	p        *packet.Connect
	ci       ConnectInfo // one allocation with the pendingConnect
	assigned bool
	serverKA bool
	method   string
	// expiryCapped: the session expiry interval granted is below the
	// client's and goes in CONNACK.
	expiryCapped bool
	ex           AuthExchange
}

// handleConnect checks the CONNECT, authenticates the client (simply, or
// by starting an enhanced authentication exchange) and, once
// authenticated, completes the connection in finishConnect.
func (c *conn) handleConnect(p *packet.Connect) error {
	c.version = p.Version
	c.mu.Lock()
	c.mu.version = p.Version
	if p.Version == packet.V5 {
		// Even a refusing CONNACK respects it [MQTT-3.2.2-19].
		c.mu.maxPacket = int(p.Properties.MaximumPacketSize)
	}
	c.mu.Unlock()
	o := c.b.opts()

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
	if o.Redirect != "" {
		code := packet.UseAnotherServer
		if o.RedirectPermanent {
			code = packet.ServerMoved
		}
		return c.redirect(code, o.Redirect)
	}
	ka := time.Duration(p.KeepAlive) * time.Second
	serverKA := false
	if max := o.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
		if p.Version != packet.V5 {
			return c.refuse(packet.ServerUnavailable, fmt.Errorf("keepalive %v above the maximum %v", ka, max))
		}
		p.KeepAlive, serverKA = uint16(max/time.Second), true // [MQTT-3.2.2-21]
	}
	if min := o.MinKeepAlive; min > 0 && ka > 0 && ka < min {
		return c.refuse(packet.ServerUnavailable, fmt.Errorf("keepalive %v below the minimum %v", ka, min))
	}
	if p.Will != nil {
		if err := c.b.validateName(p.Will.Topic); err != nil {
			return &closeError{code: packet.TopicNameInvalid, reason: reasonProtocol, err: fmt.Errorf("will topic: %w", err)}
		}
		if p.Will.Properties.Has(packet.PropResponseTopic) {
			if err := c.b.validateName(p.Will.Properties.ResponseTopic); err != nil {
				// A Response Topic is a topic name [MQTT-3.1.3-11].
				return &closeError{code: packet.ProtocolError, reason: reasonProtocol, err: fmt.Errorf("will response topic: %w", err)}
			}
		}
		if p.Will.Properties.PayloadFormatIndicator == 1 && !utf8.Valid(p.Will.Payload) {
			// A will payload said to be UTF-8 must be [MQTT-3.1.3-10].
			return c.refuse(packet.PayloadFormatInvalid, errors.New("will payload is not UTF-8"))
		}
	}

	pc := &pendingConnect{p: p, assigned: assigned, serverKA: serverKA}
	pc.ci = ConnectInfo{
		ClientID: id, Username: p.Username, HasUser: p.UsernameFlag,
		Password: p.Password, HasPass: p.PasswordFlag, Version: p.Version,
		RemoteAddr: c.nc.RemoteAddr(), Listener: c.li.name, Connect: p,
		PeerCertificates: peerCertificates(c.nc),
	}
	ci := &pc.ci
	if c.li.certUsername != "" {
		name, ok := certUsername(c.li.certUsername, ci.PeerCertificates)
		if !ok {
			return c.refuse(packet.NotAuthorized, errors.New("listener names clients by certificate and none was presented"))
		}
		ci.Username, ci.HasUser, ci.CertUsername = name, true, true
	}
	enhanced := enhancedAuth(p)
	ctx := context.Background()
	if enhanced || !quickAuthenticator(o.Authenticator) {
		// A quick authenticator gets no deadline: it never waits (one
		// timer fewer per connection).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
		defer cancel()
	}
	if enhanced {
		pc.method = p.Properties.AuthenticationMethod
		return c.startAuth(ctx, pc, p.Properties.AuthenticationData)
	}
	ident, err := o.Authenticator.Authenticate(ctx, ci)
	if err != nil {
		code := refusalCode(err, packet.ServerUnavailable)
		var hr *HeldRefusal
		if errors.As(err, &hr) {
			return c.refuseHeld(pc, code, hr.Delay, fmt.Errorf("authentication: %w", err))
		}
		return c.refuseAuth(pc, code, fmt.Errorf("authentication: %w", err))
	}
	return c.finishConnect(pc, ident, nil)
}

// enhancedAuth reports whether p starts a 5.0 enhanced authentication
// exchange (it names an Authentication Method) [MQTT-4.12.0-1].
func enhancedAuth(p *packet.Connect) bool {
	return p.Version == packet.V5 && p.Properties.Has(packet.PropAuthenticationMethod)
}

// quickAuthenticator reports whether a never returns late
// (QuickAuthenticator).
func quickAuthenticator(a Authenticator) bool {
	q, ok := a.(QuickAuthenticator)
	return ok && q.AuthenticatesQuickly()
}

// refusalCode returns the failure ReasonCode err carries, or def.
func refusalCode(err error, def packet.ReasonCode) packet.ReasonCode {
	var rc packet.ReasonCode
	if errors.As(err, &rc) && rc.IsError() {
		return rc
	}
	return def
}

// finishConnect completes an authenticated CONNECT: will authorization,
// takeover, session and CONNACK.
func (c *conn) finishConnect(pc *pendingConnect, ident *Identity, authData []byte) error {
	p, o := pc.p, c.b.opts()
	c.pending = nil
	if ident.ClientID == "" {
		ident.ClientID = c.clientID
	}
	if strings.Contains(ident.Tenant, tenantSep) {
		// A NUL would make the session key ambiguous (SessionKey); the
		// auth package refuses such tenants already.
		return c.refuse(packet.NotAuthorized, errors.New("tenant contains U+0000"))
	}
	c.id = ident
	c.key = SessionKey(ident.Tenant, c.clientID)
	if !ident.ExpiresAt.IsZero() && !ident.ExpiresAt.After(o.Now()) {
		return c.refuse(packet.NotAuthorized, errors.New("credentials already expired"))
	}
	if p.Will != nil && !o.Authorizer.CanPublish(ident, p.Will.Topic, p.Will.QoS, p.Will.Retain) {
		return c.refuse(packet.NotAuthorized, fmt.Errorf("will topic %q not authorized", p.Will.Topic))
	}
	if c.b.fabric != nil {
		// The cluster records that the session is now on this node and
		// has the node that held it close its connection [MQTT-3.1.4-2].
		if err := c.claim(); err != nil {
			return c.refuse(packet.ServerUnavailable, err) // 5.0: 0x88; 3.x: CONNACK 3
		}
		// A persistent session another node held comes from the
		// cluster's journal (adopt.go).
		if err := c.adopt(p.CleanStart); err != nil {
			c.b.stats.cluster.adoptFailed.Add(1)
			c.b.refusals.Log(slog.LevelWarn, ratelog.AddrKey(c.remoteAddr), "cluster: adopting the session failed; CONNECT refused",
				"tenant", c.id.Tenant, "client", c.clientID, "remote", c.remoteString(), "err", err)
			c.b.releaseUnheld(c.key)
			return c.refuse(packet.ServerUnavailable, err)
		}
	}
	c.will = p.Will
	c.clean = p.CleanStart
	c.authMethod = pc.method
	inflight := o.MaxInflight
	if p.Version == packet.V5 {
		// A 5.0 session ends with the connection unless it has an expiry
		// interval [MQTT-3.1.2-23].
		c.expiry = p.Properties.SessionExpiryInterval
		max := o.MaxSessionExpiry
		if a := o.AssignedIDMaxSessionExpiry; pc.assigned && a > 0 && (max == 0 || a < max) {
			max = a
		}
		if max > 0 && c.expiry != 0 && time.Duration(c.expiry)*time.Second > max {
			c.expiry = uint32(max / time.Second) // announced in CONNACK
			pc.expiryCapped = true
		}
		c.clean = c.expiry == 0
		if p.Properties.Has(packet.PropReceiveMaximum) {
			// Never more unacknowledged QoS 1/2 messages in flight than
			// the client's Receive Maximum [MQTT-3.3.4-9].
			inflight = min(inflight, int(p.Properties.ReceiveMaximum))
		}
		c.mu.Lock()
		c.mu.maxPacket = int(p.Properties.MaximumPacketSize) // 0: no limit
		c.mu.aliasMax = p.Properties.TopicAliasMaximum
		c.mu.Unlock()
	}
	if p.KeepAlive > 0 {
		// Close after one and a half keepalive periods without a packet,
		// counted in milliseconds [MQTT-3.1.2-24].
		c.readWait = time.Duration(p.KeepAlive) * 1500 * time.Millisecond
	} else if tc := keepAliver(c.nc); tc != nil {
		// No MQTT keepalive: TCP's, with the system's timing, ends a
		// half-open connection instead (the listener leaves it off for
		// everyone else). One setsockopt; an error means the connection
		// is closed, which the next read reports.
		_ = tc.SetKeepAlive(true)
	}

	// Only now, authenticated, may the client take over an existing
	// connection with its id [MQTT-3.1.4-2], and only within its tenant.
	sess, present, discarded, err := c.b.attach(c, p.CleanStart)
	switch {
	case errors.Is(err, errAttachWaits):
		c.handoff = p // a connection goroutine handles the CONNECT again
		return errHandOff
	case errors.Is(err, errConnectionLimit):
		code := packet.ServerUnavailable
		if p.Version == packet.V5 {
			code = packet.ServerBusy
		}
		if c.b.fabric != nil {
			c.b.releaseUnheld(c.key)
		}
		return c.refuse(code, fmt.Errorf("connection limit %d reached", o.MaxConnections))
	case errors.Is(err, errClaimLost):
		return c.refuse(packet.ServerUnavailable, err)
	}
	c.b.setTenant(sess, ident.Tenant)
	c.sess = sess
	// A session resumed from another identity keeps only what this one
	// may have, decided before anything is sent (DESIGN.md section 3).
	c.b.hold(sess, ident, present)
	c.connected = true
	if err := c.persistSession(present, discarded); err != nil {
		c.b.detach(c, false)
		return c.refuse(packet.ServerUnavailable, err)
	}
	c.b.keepWill(c)

	var ack *packet.Connack
	if p.Version == packet.V5 {
		ack = &packet.Connack{SessionPresent: present} // [MQTT-3.2.2-1] [MQTT-3.2.2-2]
		c.connackProperties(&ack.Properties, pc, authData)
	} else {
		ack = connack3x(present)
	}
	// The CONNACK is queued before the session is handed to the writer, so
	// it is the first packet the client receives [MQTT-3.2.0-1].
	c.countConnect()
	c.reply(ack)
	c.mu.Lock()
	c.mu.sess = sess
	c.mu.Unlock()
	sess.Attach(c, inflight)
	c.deferWake(c) // a reader that just handled CONNECT writes the CONNACK itself (flushWakes)
	if !ident.ExpiresAt.IsZero() {
		c.watchExpiry(ident.ExpiresAt)
	}
	if c.b.log.Enabled(context.Background(), slog.LevelInfo) { // no argument building when off
		c.b.log.Info("client connected", AuditKey, AuditConnect, "tenant", ident.Tenant, "client", c.clientID, "principal", ident.Principal,
			"method", ident.Method, "remote", c.remoteString(), "listener", c.li.name, "version", p.Version.String(),
			"clean", p.CleanStart, "keepalive", p.KeepAlive, "session_present", present, "username", pc.ci.Username)
	}
	return nil
}

// connacks3x are the accepting CONNACKs of 3.x clients, without and with
// a session present [MQTT-3.2.2-1] [MQTT-3.2.2-2]. They have no
// properties, and nothing changes a queued packet (appendPacket trims
// properties only of 5.0 packets over a client's Maximum Packet Size), so
// every connection shares them: one allocation fewer per connection.
var connacks3x = [2]packet.Connack{{}, {SessionPresent: true}}

func connack3x(present bool) *packet.Connack {
	if present {
		return &connacks3x[1]
	}
	return &connacks3x[0]
}

// persistSession records the session in the store before CONNACK: a
// persistent one is written (its expiry updated when resumed), one that
// ends with this connection is removed, and so is the old session a clean
// start discards. Clean sessions never reach the store otherwise.
func (c *conn) persistSession(present, discarded bool) error {
	if c.b.store == nil {
		return nil
	}
	persistent := !c.clean
	wasStored := c.sess.Persistent() && present
	c.sess.SetPersistent(persistent)
	var batch Batch
	if discarded || (wasStored && !persistent) || c.journalDiscard {
		batch.Add(Op{Kind: OpDeleteSession, ClientID: c.key})
	}
	if persistent {
		// With the will: if the broker stops while the client is
		// connected, the connection ends abnormally and the will is due.
		rec := sessionRecord(c, time.Time{}, true)
		if c.b.journal != nil && !present {
			// A new session in a cluster: the log's messages before now
			// are not for it, wherever it is adopted (adopt.go).
			c.sess.NoteSeq(c.b.logApplied())
			rec.LastSeq = c.sess.LastSeq()
		}
		batch.Add(Op{Kind: OpPutSession, ClientID: c.key, Session: rec})
	}
	var cooling []session.CoolingID
	if persistent && wasStored {
		// Removals a previous connection could not confirm durable: their
		// packet ids are given again only after (session.Cooled).
		cooling = c.sess.Cooling()
		for _, ci := range cooling {
			batch.Add(Op{Kind: OpDequeue, ClientID: c.key, Seq: ci.Seq})
		}
	}
	if err := c.b.commit(&batch, persistent); err != nil {
		return err
	}
	for _, ci := range cooling {
		c.sess.Cooled(ci.PacketID, ci.Seq)
	}
	return nil
}

// connackProperties fills the 5.0 CONNACK properties: what the broker
// assigned or limits, and what it does not support left at the defaults.
func (c *conn) connackProperties(props *packet.Properties, pc *pendingConnect, authData []byte) {
	o := c.b.opts()
	if pc.assigned {
		props.AssignedClientIdentifier = c.clientID // [MQTT-3.2.2-16]
		props.Set(packet.PropAssignedClientIdentifier)
	}
	if pc.serverKA {
		props.ServerKeepAlive = pc.p.KeepAlive // [MQTT-3.2.2-21]
		props.Set(packet.PropServerKeepAlive)
	}
	if pc.expiryCapped {
		// The server's Session Expiry Interval overrides the client's (5.0 §3.2.2.3.2).
		props.SessionExpiryInterval = c.expiry
		props.Set(packet.PropSessionExpiryInterval)
	}
	if o.ReceiveMaximum < 65535 {
		props.ReceiveMaximum = uint16(o.ReceiveMaximum)
		props.Set(packet.PropReceiveMaximum)
	}
	props.MaximumPacketSize = uint32(o.MaxPacketSize)
	props.Set(packet.PropMaximumPacketSize)
	if o.TopicAliasMaximum > 0 {
		props.TopicAliasMaximum = uint16(o.TopicAliasMaximum)
		props.Set(packet.PropTopicAliasMaximum)
	}
	if pc.method != "" {
		props.AuthenticationMethod = pc.method
		props.Set(packet.PropAuthenticationMethod)
		if len(authData) > 0 {
			props.AuthenticationData = authData
			props.Set(packet.PropAuthenticationData)
		}
	}
}

// refuse answers CONNACK with code and closes the connection
// [MQTT-3.2.2-5] [MQTT-3.2.2-6].
func (c *conn) refuse(code packet.ReasonCode, err error) error {
	c.b.metrics.refused[code].Add(1)
	ack := &packet.Connack{ReasonCode: code}
	if c.version == packet.V5 && !secret(code) { // a reason string is always allowed on CONNACK [MQTT-3.1.2-29]
		ack.Properties.ReasonString = err.Error()
		ack.Properties.Set(packet.PropReasonString)
	}
	c.queueLast(ack, reasonRefused) // written by cleanup, on this goroutine, once the read loop returns the error
	c.logRefused(code, err)
	return &closeError{code: code, reason: reasonRefused, err: err}
}

// refuseHeld is refuseAuth for a refusal the authenticator asked to hold
// (HeldRefusal): the CONNACK, without properties, is encoded now and the
// socket handed to the broker's held refusals, which write it and close
// the connection after delay; the read loop ends as for any refusal, and
// no goroutine waits. When they are full (or the CONNACK would exceed the
// client's Maximum Packet Size [MQTT-3.2.2-19]) it is refuseAuth.
func (c *conn) refuseHeld(pc *pendingConnect, code packet.ReasonCode, delay time.Duration, err error) error {
	ack, aerr := (&packet.Connack{ReasonCode: code}).Append(nil, c.version)
	c.mu.Lock()
	maxPacket := c.mu.maxPacket
	c.mu.Unlock()
	if aerr != nil || (maxPacket > 0 && len(ack) > maxPacket) || !c.b.held.hold(c.nc, ack, delay) {
		return c.refuseAuth(pc, code, err)
	}
	c.held = true
	c.mu.Lock()
	c.mu.closing, c.mu.reason = true, reasonRefused // nothing is queued: the held refusal writes the CONNACK
	c.mu.Unlock()
	c.countAuthFail(pc, code)
	c.b.metrics.refused[code].Add(1)
	c.logRefused(code, err)
	return &closeError{code: code, reason: reasonRefused, err: err}
}

// secret reports refusals whose details stay in the broker's log: an
// authentication failure tells the client its code and nothing more.
func secret(code packet.ReasonCode) bool {
	switch code {
	case packet.BadUsernameOrPassword, packet.NotAuthorized, packet.BadAuthenticationMethod, packet.Banned:
		return true
	}
	return false
}

// redirect refuses the connection pointing the client at another server
// (5.0 server redirection); 3.x clients get server unavailable.
func (c *conn) redirect(code packet.ReasonCode, server string) error {
	if c.version != packet.V5 {
		return c.refuse(packet.ServerUnavailable, fmt.Errorf("redirected to %s (3.x has no server reference)", server))
	}
	ack := &packet.Connack{ReasonCode: code}
	ack.Properties.ServerReference = server
	ack.Properties.Set(packet.PropServerReference)
	c.queueLast(ack, reasonRefused) // written by cleanup once the read loop returns the error
	c.b.log.Info("connection redirected", "remote", c.remoteString(), "server", server, "code", code.String())
	return &closeError{code: code, reason: reasonRefused, err: fmt.Errorf("redirected to %s", server)}
}

// newClientID returns a unique identifier for a client that sent none.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics instead)
	return "petrel-" + hex.EncodeToString(b[:])
}
