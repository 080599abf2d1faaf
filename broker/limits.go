package broker

import (
	"fmt"

	"github.com/petrel-mqtt/petrel/internal/topic"
)

// validateName checks a topic name against the spec and the configured
// length and level limits.
func (b *Broker) validateName(name string) error {
	if err := topic.ValidateName(name); err != nil {
		return err
	}
	return b.checkTopicLimits(name)
}

// checkTopicLimits applies MaxTopicLength and MaxTopicLevels.
func (b *Broker) checkTopicLimits(s string) error {
	if len(s) > b.opts().MaxTopicLength {
		return fmt.Errorf("%w: %d bytes, limit %d", topic.ErrTooLong, len(s), b.opts().MaxTopicLength)
	}
	if max := b.opts().MaxTopicLevels; max > 0 {
		if n := topic.Levels(s); n > max {
			return fmt.Errorf("%w: %d levels, limit %d", topic.ErrTooLong, n, max)
		}
	}
	return nil
}

// overConnectionLimit reports whether client id connecting would exceed
// MaxConnections; taking over a connected id adds no connection.
func (b *Broker) overConnectionLimit(id string) bool {
	if b.opts().MaxConnections == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, takeover := b.mu.clients[id]
	return !takeover && len(b.mu.clients) >= b.opts().MaxConnections
}
