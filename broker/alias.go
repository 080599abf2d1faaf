package broker

import (
	"strings"

	"github.com/petrel-mqtt/petrel/packet"
)

// alias gives p's topic an outbound topic alias: the first message on a
// topic carries topic and alias, later ones the alias alone (5.0 section
// 3.3.2.3.4). Aliases are never reassigned. The table holds at most
// lim.aliasMax topics, the client's Topic Alias Maximum [MQTT-3.1.2-26]
// or the broker's TopicAliasOutMaximum if smaller, and lim.aliasBytes
// bytes of topic names (TopicAliasOutBytes), each its own copy (not the
// message's, which would keep its payload alive); a topic beyond either
// goes out with its name in full and no alias, which is the sender's
// choice (section 3.3.2.3.4).
func (c *conn) alias(p *packet.Publish, lim *outLimits) {
	if a, ok := c.outAlias[p.Topic]; ok {
		p.Topic = ""
		p.Properties.TopicAlias = a
		p.Properties.Set(packet.PropTopicAlias)
		return
	}
	if len(c.outAlias) >= int(lim.aliasMax) || c.outAliasBytes+len(p.Topic) > lim.aliasBytes {
		return
	}
	if c.outAlias == nil {
		c.outAlias = make(map[string]uint16)
	}
	a := uint16(len(c.outAlias) + 1)
	c.outAlias[strings.Clone(p.Topic)] = a
	c.outAliasBytes += len(p.Topic)
	p.Properties.TopicAlias = a
	p.Properties.Set(packet.PropTopicAlias)
}
