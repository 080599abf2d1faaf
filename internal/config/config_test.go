package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEmptyFileGivesDefaults(t *testing.T) {
	c, err := Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:1883" || c.Listeners[0].Type != "tcp" {
		t.Fatalf("default listener %+v", c.Listeners)
	}
	if c.Limits.QueueMessages != 50_000 || c.Limits.QueuePolicy != "drop-new" || c.Limits.MaxInflight != 1024 {
		t.Fatalf("default limits %+v", c.Limits)
	}
}

func TestFullFile(t *testing.T) {
	c, err := Parse([]byte(`
log: {level: debug, format: json}
listeners:
  - name: plain
    type: tcp
    address: 0.0.0.0:1883
    max_connections: 100
    connection_rate: 50
  - type: tls
    address: 0.0.0.0:8883
    tls:
      cert_file: server.crt
      key_file: server.key
      client_auth: require
      client_ca_file: ca.crt
      handshake_timeout: 5s
      hello_timeout: 2s
      max_handshakes_per_address: 16
  - type: ws
    address: 127.0.0.1:8080
    websocket: {allowed_origins: ["https://app.example"], trust_forwarded_for: true}
limits:
  max_packet_size: 1MiB
  queue_messages: 1000
  queue_bytes: 64KiB
  queue_policy: drop-oldest
  max_keepalive: 10m
allow_anonymous_remote: true
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[1].Name != "tls-1" || c.Listeners[1].TLS.HandshakeTimeout != 5*time.Second || c.Listeners[1].TLS.MinVersion != "1.2" {
		t.Fatalf("tls listener %+v", c.Listeners[1])
	}
	if lc := c.ListenerConfig(1); lc.HelloTimeout != 2*time.Second || lc.MaxHandshakesPerAddress != 16 || lc.MaxHandshakes != 1024 {
		t.Fatalf("tls listener handshake bounds: hello %v, per address %d, max %d", lc.HelloTimeout, lc.MaxHandshakesPerAddress, lc.MaxHandshakes)
	}
	if c.Listeners[2].WebSocket.Path != "/mqtt" || !c.Listeners[2].WebSocket.TrustForwardedFor {
		t.Fatalf("ws listener %+v", c.Listeners[2])
	}
	if c.Limits.MaxPacketSize != 1<<20 || c.Limits.QueueBytes != 64<<10 || c.Limits.MaxKeepAlive != 10*time.Minute {
		t.Fatalf("limits %+v", c.Limits)
	}
}

func TestErrorsNameTheKeyPath(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown nested key", "listeners:\n  - type: tcp\n    address: :1883\n  - type: tls\n    address: :8883\n    tls: {cert_fil: x}\n", "listeners[1].tls.cert_fil: unknown key"},
		{"unknown top key", "limitz: {}\n", "limitz: unknown key"},
		{"bad type", "limits: {queue_messages: lots}\n", `limits.queue_messages: line 1: "lots" is not a whole number`},
		{"bad duration", "limits: {connect_timeout: soon}\n", "limits.connect_timeout: line 1: \"soon\" is not a duration"},
		{"bad size", "limits: {max_packet_size: huge}\n", "limits.max_packet_size"},
		{"bad enum", "limits: {queue_policy: drop-all}\n", `limits.queue_policy: "drop-all" is not one of drop-new, drop-oldest`},
		{"tls needs cert", "listeners: [{type: tls, address: ':8883'}]\n", "listeners[0].tls.cert_file: required"},
		{"bad address", "listeners: [{type: tcp, address: nowhere}]\n", `listeners[0].address: "nowhere" is not host:port`},
		{"tls on tcp", "listeners: [{type: tcp, address: ':1', tls: {cert_file: a}}]\n", "listeners[0].tls: only for tls and wss listeners"},
		{"hello timeout on tcp", "listeners: [{type: tcp, address: ':1', tls: {hello_timeout: 1s}}]\n", "listeners[0].tls: only for tls and wss listeners"},
		{"negative hello timeout", "listeners: [{type: tls, address: ':1', tls: {cert_file: a, key_file: b, hello_timeout: -1s}}]\n", "listeners[0].tls.hello_timeout: must not be negative"},
		{"negative per-address bound", "listeners: [{type: tls, address: ':1', tls: {cert_file: a, key_file: b, max_handshakes_per_address: -2}}]\n", "listeners[0].tls.max_handshakes_per_address: must not be negative"},
		{"bad listener type", "listeners: [{type: udp, address: ':1'}]\n", `listeners[0].type: "udp" is not one of tcp, tls, ws, wss`},
		{"not a mapping", "limits: 5\n", "limits: line 1: want a mapping"},
		{"keepalive order", "limits: {min_keepalive: 10m, max_keepalive: 1m}\n", "limits.min_keepalive: 10m0s is above limits.max_keepalive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), nil)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	env := []string{"PETREL_LIMITS_QUEUE_MESSAGES=7", "PETREL_LISTENERS_0_ADDRESS=127.0.0.1:1999", "PETREL_LOG_LEVEL=warn", "PATH=/bin", "PETREL_CONFIG=x.yaml"}
	c, err := Parse([]byte("listeners: [{type: tcp, address: ':1883'}]\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.QueueMessages != 7 || c.Listeners[0].Address != "127.0.0.1:1999" || c.Log.Level != "warn" {
		t.Fatalf("overrides not applied: %+v %+v %+v", c.Limits, c.Listeners[0], c.Log)
	}
	_, err = Parse(nil, []string{"PETREL_LIMITS_QUEUE_MESAGES=7"})
	if err == nil || !strings.Contains(err.Error(), "PETREL_LIMITS_QUEUE_MESAGES: no such setting") {
		t.Fatalf("misspelt variable: %v", err)
	}
	_, err = Parse(nil, []string{"PETREL_LIMITS_QUEUE_MESSAGES=many"})
	if err == nil || !strings.Contains(err.Error(), "PETREL_LIMITS_QUEUE_MESSAGES") {
		t.Fatalf("bad value: %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "16MiB": 16 << 20, "1GB": 1e9, "2 MiB": 2 << 20} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "9999999999999GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestExampleFileIsValid(t *testing.T) {
	c, err := Load("../../petrel.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	// Relative paths resolve against the file's folder.
	abs, err := filepath.Abs(filepath.Join("../..", d.Store.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	d.Store.DataDir = abs
	if c.Limits != d.Limits || !reflect.DeepEqual(c.Listeners, d.Listeners) || c.Log != d.Log || c.Runtime != d.Runtime || c.Admin != d.Admin || c.Store != d.Store {
		t.Fatalf("the example file's values differ from the defaults it claims:\n%+v\n%+v", c, d)
	}
	if len(c.Warnings) > 0 {
		t.Errorf("the example file names removed settings: %q", c.Warnings)
	}
}

// TestGCHeapFloor: runtime.gc_heap_floor defaults to 32 MiB when left
// out (file or no file), 0 turns it off, a unit is read and a negative
// size is refused.
func TestGCHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"", DefaultGCHeapFloor},
		{"log: {level: info}\n", DefaultGCHeapFloor},
		{"runtime: {fd_table_size: 0}\n", DefaultGCHeapFloor},
		{"runtime: {gc_heap_floor: 0}\n", 0},
		{"runtime: {gc_heap_floor: 128MiB}\n", 128 << 20},
	} {
		c, err := Parse([]byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.Runtime.GCHeapFloor != tc.want {
			t.Errorf("%q: gc_heap_floor %d, want %d", tc.in, c.Runtime.GCHeapFloor, tc.want)
		}
	}
	c, err := Parse(nil, []string{"PETREL_RUNTIME_GC_HEAP_FLOOR=0"})
	if err != nil || c.Runtime.GCHeapFloor != 0 {
		t.Errorf("PETREL_RUNTIME_GC_HEAP_FLOOR=0: %v, floor %d", err, c.Runtime.GCHeapFloor)
	}
	if _, err := Parse([]byte("runtime: {gc_heap_floor: -1}\n"), nil); err == nil || !strings.Contains(err.Error(), "runtime.gc_heap_floor") {
		t.Errorf("a negative floor: %v, want an error naming runtime.gc_heap_floor", err)
	}
}

// TestFDTableSize: runtime.fd_table_size defaults to 65,536, 0 turns it
// off (file and environment), and a negative size is refused by name.
func TestFDTableSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", DefaultFDTableSize},
		{"runtime: {gc_heap_floor: 0}\n", DefaultFDTableSize},
		{"runtime: {fd_table_size: 0}\n", 0},
		{"runtime: {fd_table_size: 200000}\n", 200000},
	} {
		c, err := Parse([]byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.Runtime.FDTableSize != tc.want {
			t.Errorf("%q: fd_table_size %d, want %d", tc.in, c.Runtime.FDTableSize, tc.want)
		}
	}
	c, err := Parse(nil, []string{"PETREL_RUNTIME_FD_TABLE_SIZE=0"})
	if err != nil || c.Runtime.FDTableSize != 0 {
		t.Errorf("PETREL_RUNTIME_FD_TABLE_SIZE=0: %v, size %d", err, c.Runtime.FDTableSize)
	}
	if _, err := Parse([]byte("runtime: {fd_table_size: -1}\n"), nil); err == nil || !strings.Contains(err.Error(), "runtime.fd_table_size") {
		t.Errorf("a negative size: %v, want an error naming runtime.fd_table_size", err)
	}
}

// TestRemovedKeys: a file or environment naming a key an earlier version
// had (runtime.cpu_warming, runtime.adaptive_procs) loads, with a warning
// per key that names it, where it was and docs/tuning.md; the keys beside
// it still apply. A misspelt key is still refused.
func TestRemovedKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		environ []string
		want    []string // the start of each warning, in order
	}{
		{"none", "runtime: {gc_heap_floor: 0}\n", nil, nil},
		{"cpu_warming in the file", "log: {level: info}\nruntime:\n  cpu_warming: true\n  gc_heap_floor: 0\n", nil,
			[]string{"runtime.cpu_warming (line 3): removed setting, ignored: "}},
		{"both in the file", "runtime: {adaptive_procs: false, cpu_warming: false, gc_heap_floor: 0}\n", nil,
			[]string{"runtime.cpu_warming (line 1): ", "runtime.adaptive_procs (line 1): "}},
		{"environment", "runtime: {gc_heap_floor: 0}\n", []string{"PETREL_RUNTIME_CPU_WARMING=false", "PETREL_RUNTIME_ADAPTIVE_PROCS=true"},
			[]string{"runtime.adaptive_procs (environment PETREL_RUNTIME_ADAPTIVE_PROCS): ", "runtime.cpu_warming (environment PETREL_RUNTIME_CPU_WARMING): "}},
		{"environment without a file", "", []string{"PETREL_RUNTIME_CPU_WARMING=true", "PETREL_RUNTIME_GC_HEAP_FLOOR=0"},
			[]string{"runtime.cpu_warming (environment PETREL_RUNTIME_CPU_WARMING): "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), tc.environ)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Runtime.GCHeapFloor != 0 {
				t.Errorf("gc_heap_floor %d beside the removed key, want 0", c.Runtime.GCHeapFloor)
			}
			if len(c.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(c.Warnings[i], w) || !strings.Contains(c.Warnings[i], "docs/tuning.md") {
					t.Errorf("warning %q, want it to start with %q and name docs/tuning.md", c.Warnings[i], w)
				}
			}
		})
	}
	for _, in := range []string{"runtime: {cpu_warmin: true}\n", "cpu_warming: true\n", "log: {cpu_warming: true}\n"} {
		if _, err := Parse([]byte(in), nil); err == nil || !strings.Contains(err.Error(), "unknown key") {
			t.Errorf("%q: %v, want an unknown key refused", in, err)
		}
	}
	if _, err := Parse(nil, []string{"PETREL_RUNTIME_CPU_WARMIN=true"}); err == nil || !strings.Contains(err.Error(), "no such setting") {
		t.Errorf("a misspelt variable: %v, want it refused", err)
	}
}

func TestOmittedKeysKeepDefaultsExplicitZeroKept(t *testing.T) {
	c, err := Parse([]byte("limits: {queue_bytes: 0}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.TopicAliasMaximum != 100 || c.Limits.ReceiveMaximum != 65535 {
		t.Fatalf("omitted 5.0 limits not defaulted: %+v", c.Limits)
	}
	c, err = Parse([]byte("limits: {topic_alias_maximum: 0}\nredirect: {server: 'other:1883'}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.TopicAliasMaximum != 0 || c.BrokerOptions().TopicAliasMaximum != -1 || c.BrokerOptions().Redirect != "other:1883" {
		t.Fatalf("explicit topic_alias_maximum 0 must disable aliases: %+v", c.Limits)
	}
}

// TestMinFreeSpace: store.min_free_space defaults to 64 MiB when left out
// (file or no file), 0 turns the reserve off, a unit is read and a
// negative size is refused.
func TestMinFreeSpace(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"", DefaultMinFreeSpace},
		{"log: {level: info}\n", DefaultMinFreeSpace},
		{"store: {sync: none}\n", DefaultMinFreeSpace},
		{"store: {min_free_space: 0}\n", 0},
		{"store: {min_free_space: 1GiB}\n", 1 << 30},
	} {
		c, err := Parse([]byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.Store.MinFreeSpace != tc.want {
			t.Errorf("%q: store.min_free_space %d, want %d", tc.in, c.Store.MinFreeSpace, tc.want)
		}
	}
	if _, err := Parse([]byte("store: {min_free_space: -1}\n"), nil); err == nil {
		t.Error("a negative store.min_free_space was accepted")
	}
}
