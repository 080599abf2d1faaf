package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/petrel-mqtt/petrel/internal/ratelog"
	"github.com/petrel-mqtt/petrel/packet"
)

// AuditKey is the attribute that marks a log line as an audit event; its
// value names the event. petrel serve copies such lines to log.audit_file.
const AuditKey = ratelog.AuditKey

// Audit events the broker logs (the value of AuditKey).
const (
	AuditConnect            = "connect"             // a client authenticated and connected
	AuditConnectRefused     = "connect.refused"     // CONNACK with an error code
	AuditConnectFailed      = "connect.failed"      // bad bytes, no CONNECT in time
	AuditSubscribeRefused   = "subscribe.refused"   // a filter the client may not subscribe to
	AuditPublishRefused     = "publish.refused"     // a topic the client may not publish to
	AuditTakeover           = "takeover"            // a connection replaced by one with its client id
	AuditCredentialsExpired = "credentials.expired" // disconnected at its token's exp
)

// tlsHandshakeRecord is the first byte of a TLS handshake record: a
// ClientHello sent to a plain MQTT port.
const tlsHandshakeRecord = 0x16

// newEventLogs returns the broker's two limiters of client-caused lines:
// refusals, one line per remote address per interval, for connections
// refused or failed before CONNACK; audit, one line per client (tenant and
// client id) per interval, for what a connected client was refused. Two,
// so that a flood of bad connections never hides a client probing its
// neighbours' topics, nor the reverse.
func newEventLogs(log *slog.Logger) (refusals, audit *ratelog.Limiter) {
	return ratelog.New(log, ratelog.Options{}), ratelog.New(log, ratelog.Options{})
}

// logRefused logs a refused CONNECT (refuse), at most one line per remote
// address per interval.
func (c *conn) logRefused(code packet.ReasonCode, err error) {
	if !c.b.refusals.Enabled(slog.LevelInfo) {
		return
	}
	c.b.refusals.Log(slog.LevelInfo, ratelog.AddrKey(c.remoteAddr), "connection refused", AuditKey, AuditConnectRefused,
		"remote", c.remoteString(), "listener", c.li.name, "version", c.version.String(), "client", c.clientID,
		"code", code.String(), "err", err)
}

// logUnconnected logs a connection that ended before CONNECT completed:
// malformed bytes, a first packet other than CONNECT, no CONNECT within
// the connect timeout, at INFO, at most one line per remote address per
// interval. A refusal was logged by refuse; a client closing or resetting
// its connection (a port scanner, a health check) is DEBUG.
func (c *conn) logUnconnected(reason closeReason, err error) {
	switch {
	case reason == reasonRefused:
		return
	case reason == reasonProtocol:
		why := "protocol error"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			why = "no CONNECT within the connect timeout"
		}
		if !c.b.refusals.Enabled(slog.LevelInfo) {
			return
		}
		c.b.refusals.Log(slog.LevelInfo, ratelog.AddrKey(c.remoteAddr), "connection failed", AuditKey, AuditConnectFailed,
			"remote", c.remoteString(), "listener", c.li.name, "reason", why, "err", err)
	case reason != reasonNetwork || !errors.Is(err, io.EOF):
		c.b.log.Debug("connection closed before CONNECT completed", "remote", c.remoteString(), "reason", reason.String(), "err", err)
	}
}

// auditSubscribeRefused logs a filter the Authorizer refused, at most
// one line per client per interval; the others are counted in a report
// naming the first of them.
func (c *conn) auditSubscribeRefused(filter string) {
	if !c.b.audit.Enabled(slog.LevelInfo) {
		return
	}
	c.b.audit.Log(slog.LevelInfo, c.key, "subscription refused", AuditKey, AuditSubscribeRefused,
		"tenant", c.id.Tenant, "client", c.clientID, "principal", c.id.Principal, "filter", filter, "remote", c.remoteString())
}

// auditPublishRefused logs a PUBLISH the Authorizer refused, as
// auditSubscribeRefused does.
func (c *conn) auditPublishRefused(p *packet.Publish) {
	if !c.b.audit.Enabled(slog.LevelInfo) {
		return
	}
	c.b.audit.Log(slog.LevelInfo, c.key, "publish refused", AuditKey, AuditPublishRefused,
		"tenant", c.id.Tenant, "client", c.clientID, "principal", c.id.Principal, "topic", p.Topic, "qos", p.QoS,
		"retain", p.Retain, "remote", c.remoteString())
}
