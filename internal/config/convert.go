package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/clientaddr"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// BrokerOptions returns the broker options the configuration sets; the
// caller adds the logger and the security implementations.
func (c *Config) BrokerOptions() broker.Options {
	l := c.Limits
	o := broker.Options{
		MaxPacketSize:              int(l.MaxPacketSize),
		MaxConnectSize:             int(l.MaxConnectSize),
		ConnectTimeout:             l.ConnectTimeout,
		MinKeepAlive:               l.MinKeepAlive,
		MaxKeepAlive:               l.MaxKeepAlive,
		MaxConnections:             l.MaxConnections,
		MaxTopicLength:             l.MaxTopicLength,
		MaxTopicLevels:             l.MaxTopicLevels,
		MaxSubscriptionsPerClient:  l.MaxSubscriptions,
		QueueMessages:              l.QueueMessages,
		QueueBytes:                 int(l.QueueBytes),
		MemoryBudget:               int64(l.MemoryBudget),
		QueuePolicy:                l.QueuePolicy,
		QueueQoS0Offline:           l.QueueQoS0Offline,
		MaxInflight:                l.MaxInflight,
		ReceiveMaximum:             l.ReceiveMaximum,
		TopicAliasMaximum:          aliasMax(l.TopicAliasMaximum),
		TopicAliasOutMaximum:       aliasMax(l.TopicAliasOutMaximum),
		TopicAliasOutBytes:         int(l.TopicAliasOutBytes),
		MaxSessionExpiry:           l.MaxSessionExpiry,
		TenantQueueMessages:        l.TenantQueueMessages,
		TenantQueueBytes:           int(l.TenantQueueBytes),
		AssignedIDMaxSessionExpiry: l.AssignedIDMaxSessionExpiry,
		Redirect:                   c.Redirect.Server,
		RedirectPermanent:          c.Redirect.Permanent,
	}
	if c.Auth != nil {
		o.UnauthorizedPublish = c.Auth.UnauthorizedPublish
		o.HeldRefusals = c.Auth.PasswordChecks.RefusalHold
		o.HeldRefusalsPerAddress = c.Auth.PasswordChecks.RefusalHoldPerAddress
	}
	return o
}

// aliasMax maps the file's 0 (no aliases) to the broker's -1.
func aliasMax(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// trustedProxies is the listener's trusted proxies: websocket.
// trusted_proxies, or, for a configuration that still says
// trust_forwarded_for without it, loopback peers only (Parse warned).
// Validate refused a list that does not parse.
func (l *Listener) trustedProxies() []netip.Prefix {
	if len(l.WebSocket.TrustedProxies) > 0 {
		p, _ := clientaddr.ParseTrustedProxies(l.WebSocket.TrustedProxies) // checked by Validate
		return p
	}
	if l.WebSocket.TrustForwardedFor {
		return slices.Clone(clientaddr.Loopback)
	}
	return nil
}

// ListenerConfig returns the transport configuration of listener i.
func (c *Config) ListenerConfig(i int) listener.Config {
	l := c.Listeners[i]
	return listener.Config{
		Name:                    l.Name,
		Type:                    l.Type,
		Address:                 l.Address,
		CertFile:                l.TLS.CertFile,
		KeyFile:                 l.TLS.KeyFile,
		MinVersion:              l.TLS.MinVersion,
		ClientAuth:              l.TLS.ClientAuth,
		ClientCAFile:            l.TLS.ClientCAFile,
		HandshakeTimeout:        l.TLS.HandshakeTimeout,
		MaxHandshakes:           l.TLS.MaxHandshakes,
		HelloTimeout:            l.TLS.HelloTimeout,
		MaxHandshakesPerAddress: l.TLS.MaxHandshakesPerAddress,
		Path:                    l.WebSocket.Path,
		CheckOrigin:             l.WebSocket.AllowedOrigins,
		TrustedProxies:          l.trustedProxies(),
		UpgradeRequestTimeout:   l.WebSocket.UpgradeRequestTimeout,
		UpgradeTimeout:          l.WebSocket.UpgradeTimeout,
		MaxUpgrades:             l.WebSocket.MaxUpgrades,
		MaxUpgradesPerAddress:   l.WebSocket.MaxUpgradesPerAddress,
		ProxyProtocol:           l.ProxyProtocol,
		CertUsername:            l.TLS.CertUsername,
	}
}

// Check runs every validation that needs the outside world as well, as
// petrel serve would at start: certificates and keys loaded and matched,
// listener settings accepted by the transports, anonymous access only on
// loopback unless allowed, the users file, the role names it and the
// certificate users reference, the JWT keys, the store folder and the
// audit file. It returns every problem at once.
func (c *Config) Check() error {
	var errs []error
	for i := range c.Listeners {
		if err := c.ListenerConfig(i).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d]: %w", i, err))
		} else if err := c.ListenerConfig(i).CheckFiles(); err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d].tls: %w", i, err))
		}
		anonymous := c.Auth == nil || c.Auth.Anonymous.Enabled
		if anonymous && !c.AllowAnonymousRemote && !IsLoopback(c.Listeners[i].Address) {
			why := "every client is anonymous until authentication (auth:) is configured"
			if c.Auth != nil {
				why = "auth.anonymous.enabled is true"
			}
			errs = append(errs, fmt.Errorf("listeners[%d].address: %q is not a loopback address and %s; set allow_anonymous_remote: true to accept that", i, c.Listeners[i].Address, why))
		}
	}
	errs = append(errs, c.checkAuth(), c.checkAdmin(), c.checkCluster(), c.checkFiles())
	return errors.Join(errs...)
}

// IsLoopback reports whether a host:port address listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
