package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A removedKey is a key an earlier version accepted and this one no
// longer has. A file or environment that still names one loads: the key
// is ignored and a warning says so and where to look instead. A
// configuration written for an earlier version (petrel.example.yaml
// listed these keys) thus keeps starting after an upgrade; the keys
// changed nothing but CPU use and latency, never what a client is
// promised. Every other unknown key, a misspelling, is still an error.
type removedKey struct {
	path string // dotted key path, as in docs/configuration.md
	why  string // what became of it, and where to read more
}

// removedKeys lists them. A fresh slice each call: no package state.
func removedKeys() []removedKey {
	return []removedKey{
		{"runtime.cpu_warming", "the broker no longer keeps CPUs awake between messages; " +
			"host-side options for latency at light load are in docs/tuning.md"},
		{"runtime.adaptive_procs", "the broker no longer changes GOMAXPROCS (Go sizes it to the " +
			"container's CPU limit itself); see docs/tuning.md"},
	}
}

// removedWarning is the message for a removed key found at where (a
// line of the file, or an environment variable).
func removedWarning(k removedKey, where string) string {
	return fmt.Sprintf("%s (%s): removed setting, ignored: %s", k.path, where, k.why)
}

// dropRemoved deletes every removed key from the document root, so that
// decode never sees them, and returns a warning for each.
func dropRemoved(root *yaml.Node) []string {
	var warnings []string
	for _, k := range removedKeys() {
		parts := strings.Split(k.path, ".")
		n := root
		for _, part := range parts[:len(parts)-1] {
			if n = mappingValue(n, part); n == nil {
				break
			}
		}
		if n = resolve(n); n == nil || n.Kind != yaml.MappingNode {
			continue
		}
		last := parts[len(parts)-1]
		for i := 0; i+1 < len(n.Content); {
			if n.Content[i].Value != last {
				i += 2
				continue
			}
			warnings = append(warnings, removedWarning(k, fmt.Sprintf("line %d", n.Content[i].Line)))
			n.Content = append(n.Content[:i], n.Content[i+2:]...)
		}
	}
	return warnings
}

// mappingValue returns the value of key in mapping n, nil when n is not
// a mapping or has no such key.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n = resolve(n); n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

// removedEnv returns the warning for an environment variable that names
// a removed key (PETREL_RUNTIME_CPU_WARMING), and whether it does.
func removedEnv(name string) (string, bool) {
	for _, k := range removedKeys() {
		if name == "PETREL_"+strings.ToUpper(strings.ReplaceAll(k.path, ".", "_")) {
			return removedWarning(k, "environment "+name), true
		}
	}
	return "", false
}
