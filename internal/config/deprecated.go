package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// forwardedForWarnings returns a warning for each listener whose
// websocket section still says trust_forwarded_for, naming the key and
// its line. Such a file keeps loading (fleets upgrade by restart): with
// trusted_proxies the old key is ignored; without it only loopback peers
// are trusted (Listener.trustedProxies), where earlier versions believed
// the header from any peer.
func forwardedForWarnings(root *yaml.Node) []string {
	list := resolve(mappingValue(root, "listeners"))
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	var warnings []string
	for i, item := range list.Content {
		ws := mappingValue(item, "websocket")
		if ws = resolve(ws); ws == nil || ws.Kind != yaml.MappingNode {
			continue
		}
		var key, val *yaml.Node
		for j := 0; j+1 < len(ws.Content); j += 2 {
			if ws.Content[j].Value == "trust_forwarded_for" {
				key, val = ws.Content[j], resolve(ws.Content[j+1])
			}
		}
		if key == nil || val == nil || val.Value != "true" {
			continue
		}
		p := fmt.Sprintf("listeners[%d].websocket.trust_forwarded_for (line %d)", i, key.Line)
		if tp := resolve(mappingValue(ws, "trusted_proxies")); tp != nil && len(tp.Content) > 0 {
			warnings = append(warnings, p+": deprecated and ignored: trusted_proxies names the proxies whose X-Forwarded-For is believed")
			continue
		}
		warnings = append(warnings, p+": deprecated: X-Forwarded-For is now believed only from the proxies listed in "+
			"websocket.trusted_proxies; without that list only loopback peers (127.0.0.0/8, ::1) are trusted (docs/configuration.md)")
	}
	return warnings
}
