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
