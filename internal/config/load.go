package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid wraps every error Load and Parse return for bad content.
var ErrInvalid = errors.New("config: invalid configuration")

// Load reads the file at path, applies PETREL_... environment overrides
// from environ (os.Environ() form), fills defaults, validates and resolves
// relative paths against the file's folder (ResolvePaths).
func Load(path string, environ []string) (*Config, error) {
	c, err := LoadAll(path, environ)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// LoadAll is Load, but returns the configuration read with the problems
// found, so that a caller (petrel check) can report further problems
// with it at once. The configuration is nil only when the file cannot be
// read or is not YAML.
func LoadAll(path string, environ []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(data, environ)
	if c != nil {
		c.ResolvePaths(filepath.Dir(abs))
	}
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse is Load on bytes; relative paths are left as they are.
func Parse(data []byte, environ []string) (*Config, error) {
	c, err := parse(data, environ)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parse decodes data, applies the environment and defaults and validates,
// and returns every problem of all three steps at once.
func parse(data []byte, environ []string) (*Config, error) {
	// Keys the file leaves out keep their defaults; listeners given in the
	// file replace the default listener.
	c := &Config{Log: Default().Log, Store: defaultStore(), Limits: defaultLimits(), Runtime: defaultRuntime(), Admin: defaultAdmin(), SysInterval: DefaultSysInterval}
	var errs []error
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if len(root.Content) > 0 {
			c.Warnings = dropRemoved(root.Content[0])
			c.Warnings = append(c.Warnings, forwardedForWarnings(root.Content[0])...)
			errs = append(errs, decode(root.Content[0], reflect.ValueOf(c).Elem(), ""))
		}
	} else {
		c = Default()
	}
	warnings, err := applyEnv(c, environ)
	c.Warnings = append(c.Warnings, warnings...)
	errs = append(errs, err)
	c.Warnings = append(c.Warnings, c.clusterWarnings()...) // before the defaults: only a replicas set by hand
	c.applyDefaults()
	errs = append(errs, c.Validate())
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("%w:\n%w", ErrInvalid, err)
	}
	return c, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode sets v from n, rejecting keys that v's type does not have, and
// names the key path in every error.
func decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
		// An optional section (auth:): present, even empty, means set.
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			if p, ok := v.Interface().(interface{ presetDefaults() }); ok {
				p.presetDefaults()
			}
		}
		v = v.Elem()
	}
	if n.Tag == "!!null" {
		return nil
	}
	show := path
	if show == "" {
		show = "(top level)"
	}
	switch {
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: line %d: want a mapping of keys", show, n.Line)
		}
		fields := yamlFields(v.Type())
		var errs []error
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			p := key
			if path != "" {
				p = path + "." + key
			}
			if first, dup := seen[key]; dup {
				// The YAML node API keeps both; a decoder would let the
				// last one win silently.
				errs = append(errs, fmt.Errorf("%s: duplicate key (line %d; first on line %d)", p, n.Content[i].Line, first))
				continue
			}
			seen[key] = n.Content[i].Line
			idx, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", p, n.Content[i].Line))
				continue
			}
			if err := decode(n.Content[i+1], v.Field(idx), p); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: line %d: want a list", show, n.Line)
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		var errs []error
		for i, item := range n.Content {
			if err := decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				errs = append(errs, err)
			}
		}
		v.Set(s)
		return errors.Join(errs...)
	default:
		if v.Type() == durationType {
			if n.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s: line %d: want a duration such as 10s or 1m30s", show, n.Line)
			}
			d, err := time.ParseDuration(n.Value)
			if err != nil {
				return fmt.Errorf("%s: line %d: %q is not a duration such as 10s or 1m30s", show, n.Line, n.Value)
			}
			v.SetInt(int64(d))
			return nil
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: line %d: %q is not %s", show, n.Line, n.Value, kindName(v))
		}
		return nil
	}
}

func kindName(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeOf(ByteSize(0)) {
			return "a size such as 1048576, 64KiB or 16MiB"
		}
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	}
	return "a " + v.Kind().String()
}

// yamlFields maps a struct's yaml key names to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// applyEnv applies PETREL_<PATH> variables: the key path upper-cased with
// "." and list indexes written as "_", e.g. PETREL_LIMITS_QUEUE_MESSAGES=100
// or PETREL_LISTENERS_0_ADDRESS=0.0.0.0:1883 (the listener must exist). It
// returns a warning for each variable naming a removed key, which it
// ignores.
func applyEnv(c *Config, environ []string) ([]string, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "PETREL_") {
			vars[k] = val
		}
	}
	if len(vars) == 0 {
		return nil, nil
	}
	known := map[string]reflect.Value{}
	collectEnv(reflect.ValueOf(c).Elem(), "PETREL", known)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	var warnings []string
	for _, k := range keys {
		v, ok := known[k]
		if !ok {
			if isCommandVar(k) {
				continue
			}
			if w, ok := removedEnv(k); ok {
				warnings = append(warnings, w)
				continue
			}
			errs = append(errs, fmt.Errorf("environment %s: no such setting", k))
			continue
		}
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: vars[k]}
		if err := decode(n, v, "environment "+k); err != nil {
			errs = append(errs, err)
		}
	}
	return warnings, errors.Join(errs...)
}

// isCommandVar reports variables that belong to the command line rather
// than to the file: PETREL_CONFIG, and petrel ctl's address and
// credentials.
func isCommandVar(k string) bool {
	switch k {
	case "PETREL_CONFIG", "PETREL_ADMIN_URL", "PETREL_ADMIN_USER", "PETREL_ADMIN_PASSWORD", "PETREL_ADMIN_TOKEN":
		return true
	}
	return false
}

func collectEnv(v reflect.Value, prefix string, out map[string]reflect.Value) {
	if v.Kind() == reflect.Pointer {
		// An optional section is overridable only when the file has it.
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch {
	case v.Kind() == reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			collectEnv(v.Field(i), prefix+"_"+strings.ToUpper(name), out)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		for i := 0; i < v.Len(); i++ {
			collectEnv(v.Index(i), prefix+"_"+strconv.Itoa(i), out)
		}
	default:
		out[prefix] = v
	}
}
