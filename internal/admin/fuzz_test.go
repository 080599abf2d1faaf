package admin

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// FuzzCursor: any cursor parameter decodes to exactly the fields asked
// for or to an error, never panics, and every cursor the API makes
// decodes back to its fields.
func FuzzCursor(f *testing.F) {
	f.Add("", "", "")
	f.Add("A", "meter/1", "a/+/#")
	f.Add("\x00", "\xff", "é")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for n := 1; n <= 3; n++ {
			fields := []string{a, b, c}[:n]
			r := httptest.NewRequest("GET", "/x?cursor="+url.QueryEscape(encodeCursor(fields...)), nil)
			got, err := decodeCursor(r, n)
			if err != nil {
				t.Fatalf("%q: %v", fields, err)
			}
			// JSON replaces invalid UTF-8; what comes back is what JSON keeps.
			want := make([]string, n)
			for i, s := range fields {
				b, _ := json.Marshal(s) // strings always marshal
				if err := json.Unmarshal(b, &want[i]); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%q came back as %q", fields, got)
			}
			// The raw string as a cursor: decoded to n fields or refused.
			r = httptest.NewRequest("GET", "/x?cursor="+url.QueryEscape(a), nil)
			if got, err := decodeCursor(r, n); err == nil && got != nil && len(got) != n {
				t.Fatalf("cursor %q gave %d fields, want %d", a, len(got), n)
			}
		}
	})
}

// FuzzPublishRequest: any publish body decodes to a message within the
// API's bounds or to an error, never panics.
func FuzzPublishRequest(f *testing.F) {
	f.Add([]byte(`{"topic":"a/b","payload":"x","qos":1,"retain":true}`))
	f.Add([]byte(`{"topic":"a","payload":"AAE=","payload_encoding":"base64","user_properties":[{"key":"k","value":"v"}]}`))
	f.Add([]byte(`{"topic":"a","qos":-1}`))
	f.Add([]byte(`{"topic":"a","response_topic":"r/#","message_expiry_interval":4294967295}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.PublishRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		m, err := adminMessage(&req)
		if err != nil {
			return
		}
		if m.QoS > 2 || m.Topic != req.Topic || m.Retain != req.Retain {
			t.Fatalf("%s gave %+v", body, m)
		}
		if m.Properties != nil && len(m.Properties.UserProperties) > maxUserProperties {
			t.Fatalf("%d user properties", len(m.Properties.UserProperties))
		}
		if m.Properties != nil && strings.ContainsAny(m.Properties.ResponseTopic, "+#\x00") {
			t.Fatalf("response topic %q with a wildcard", m.Properties.ResponseTopic)
		}
	})
}

// FuzzCredentials: any Authorization header gives credentials, none, or
// a refusal, never a panic; a Bearer token is never taken as a username.
func FuzzCredentials(f *testing.F) {
	f.Add("Basic dTpw")
	f.Add("Bearer a.b.c")
	f.Add("bearer ")
	f.Add("Basic !!!")
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		user, pass, ok, malformed := credentials(r)
		if ok && malformed {
			t.Fatalf("%q: both credentials and malformed", h)
		}
		if ok && strings.HasPrefix(strings.ToLower(h), "bearer") && user != "" {
			t.Fatalf("%q: a token gave username %q", h, user)
		}
		if !ok && (user != "" || pass != "") {
			t.Fatalf("%q: credentials %q %q without ok", h, user, pass)
		}
	})
}
