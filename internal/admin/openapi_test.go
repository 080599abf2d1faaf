package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/mqtttest"
	"github.com/petrel-mqtt/petrel/packet"
)

// openAPIFile is the API's description, checked against the server here.
const openAPIFile = "../../docs/api/openapi.yaml"

type spec map[string]any

func loadSpec(t *testing.T) spec {
	t.Helper()
	data, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	return spec(m)
}

func (s spec) paths() map[string]any { return s["paths"].(map[string]any) }

// operations lists "METHOD /path" for every operation of the file.
func (s spec) operations() []string {
	var out []string
	for p, item := range s.paths() {
		for m := range item.(map[string]any) {
			switch m {
			case "get", "post", "put", "delete", "patch":
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// specPattern turns a server pattern ("GET /x/{id...}") into the file's
// form ("GET /x/{id}").
func specPattern(p string) string { return strings.ReplaceAll(p, "...}", "}") }

// TestOpenAPIMatchesRoutes: every route the server has is in the file,
// and every operation of the file is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := loadSpec(t)
	srv, err := admin.New(admin.Options{Broker: mustBroker(t)})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, p := range srv.Patterns() {
		routes = append(routes, specPattern(p))
	}
	sort.Strings(routes)
	if ops := s.operations(); !slices.Equal(ops, routes) {
		t.Fatalf("the file's operations\n  %v\ndiffer from the server's routes\n  %v", ops, routes)
	}
}

func mustBroker(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return b
}

// resolve follows a $ref within the file.
func (s spec) resolve(node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		var cur any = map[string]any(s)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		node = cur.(map[string]any)
	}
}

// validate checks v against schema: types, required fields, enums, and
// no field the schema does not document.
func (s spec) validate(schema map[string]any, v any, at string) []string {
	schema = s.resolve(schema)
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	switch schema["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range asList(schema["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				bad("required field %q missing", r)
			}
		}
		for k, fv := range obj {
			ps, ok := props[k].(map[string]any)
			if !ok {
				bad("field %q is not in the schema", k)
				continue
			}
			errs = append(errs, s.validate(ps, fv, at+"."+k)...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return errs
		}
		for i, item := range arr {
			errs = append(errs, s.validate(schema["items"].(map[string]any), item, at+"["+strconv.Itoa(i)+"]")...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
		} else if enum := asList(schema["enum"]); enum != nil && !slices.Contains(enum, any(str)) {
			bad("%q is not one of %v", str, enum)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			bad("want an integer, got %v", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			bad("want a number, got %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	default:
		bad("schema without a type")
	}
	return errs
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestOpenAPIResponsesValidate calls every route of a live broker with
// clients, sessions, subscriptions and retained messages, and checks each
// answer's status is documented and its body matches the documented
// schema.
func TestOpenAPIResponsesValidate(t *testing.T) {
	s := loadSpec(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "up 1") })
	e := start(t, broker.Options{}, admin.Options{Metrics: metrics, Reload: func(context.Context) error { return nil },
		Cluster: func(context.Context) (*api.Cluster, error) { return sampleCluster(), nil }}, "")
	c := mqtttest.Dial(t, e.mqtt, packet.V5)
	c.Connect(&packet.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30, Properties: expiry(600)})
	c.Subscribe(1, packet.Subscription{Filter: "cmd/#", QoS: 1, NoLocal: true})
	off := mqtttest.Dial(t, e.mqtt, packet.V5)
	off.Connect(&packet.Connect{ClientID: "dev-2", CleanStart: true, KeepAlive: 30, Properties: expiry(600)})
	off.Subscribe(1, packet.Subscription{Filter: "cmd/+", QoS: 0})
	off.Send(&packet.Disconnect{})
	off.ExpectClosed()
	e.must("POST", "/api/v1/publish", none, `{"topic":"cfg/a","payload":"AP8=","payload_encoding":"base64","retain":true,"qos":1,"message_expiry_interval":600,"content_type":"x"}`, http.StatusOK, nil)

	calls := []struct {
		method, op, path, body string
	}{
		{"GET", "/healthz", "/healthz", ""},
		{"GET", "/readyz", "/readyz", ""},
		{"GET", "/metrics", "/metrics", ""},
		{"GET", "/api/v1/clients", "/api/v1/clients", ""},
		{"GET", "/api/v1/clients", "/api/v1/clients?limit=x", ""},
		{"GET", "/api/v1/clients/{client_id}", "/api/v1/clients/dev-1", ""},
		{"GET", "/api/v1/clients/{client_id}", "/api/v1/clients/dev-2", ""},
		{"GET", "/api/v1/sessions", "/api/v1/sessions?limit=1", ""},
		{"GET", "/api/v1/sessions/{client_id}", "/api/v1/sessions/dev-2", ""},
		{"GET", "/api/v1/subscriptions", "/api/v1/subscriptions?topic=cmd/x", ""},
		{"GET", "/api/v1/subscriptions", "/api/v1/subscriptions?limit=1", ""},
		{"GET", "/api/v1/retained", "/api/v1/retained", ""},
		{"GET", "/api/v1/retained", "/api/v1/retained?filter=a/%23/b", ""},
		{"GET", "/api/v1/retained/{topic}", "/api/v1/retained/cfg/a", ""},
		{"POST", "/api/v1/publish", "/api/v1/publish", `{"topic":"cmd/x","payload":"hi","user_properties":[{"key":"k","value":"v"}]}`},
		{"POST", "/api/v1/publish", "/api/v1/publish", `{"topic":"cmd/#"}`},
		{"GET", "/api/v1/stats", "/api/v1/stats", ""},
		{"POST", "/api/v1/reload", "/api/v1/reload", ""},
		{"GET", "/api/v1/cluster", "/api/v1/cluster", ""},
		{"DELETE", "/api/v1/retained/{topic}", "/api/v1/retained/cfg/a", ""},
		{"DELETE", "/api/v1/retained/{topic}", "/api/v1/retained/cfg/a", ""},
		{"DELETE", "/api/v1/clients/{client_id}", "/api/v1/clients/dev-1", ""},
		{"DELETE", "/api/v1/sessions/{client_id}", "/api/v1/sessions/dev-2", ""},
		{"DELETE", "/api/v1/sessions/{client_id}", "/api/v1/sessions/dev-2", ""},
	}
	covered := map[string]bool{}
	for _, call := range calls {
		op := call.method + " " + call.op
		covered[op] = true
		status, body := e.do(call.method, call.path, none, call.body)
		operation, ok := s.paths()[call.op].(map[string]any)[strings.ToLower(call.method)].(map[string]any)
		if !ok {
			t.Fatalf("%s is not in the file", op)
		}
		resp, ok := operation["responses"].(map[string]any)[strconv.Itoa(status)].(map[string]any)
		if !ok {
			t.Errorf("%s %s answered %d, which the file does not document (%s)", call.method, call.path, status, body)
			continue
		}
		resp = s.resolve(resp)
		content, _ := resp["content"].(map[string]any)
		js, ok := content["application/json"].(map[string]any)
		if !ok {
			continue // text/plain: /metrics
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: not JSON: %v", call.method, call.path, err)
			continue
		}
		for _, msg := range s.validate(js["schema"].(map[string]any), v, call.method+" "+call.path) {
			t.Error(msg)
		}
	}
	for _, op := range s.operations() {
		if !covered[op] {
			t.Errorf("%s is not exercised", op)
		}
	}
}
