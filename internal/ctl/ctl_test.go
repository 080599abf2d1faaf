package ctl

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// TestSegment: an escaped client id or topic is one path segment that
// decodes back to itself, whatever it holds.
func TestSegment(t *testing.T) {
	for _, s := range []string{"meter-1", "/", "..", ".", "a//b", "?#%&+ é", "\x00\xff"} {
		seg := Segment(s)
		if strings.ContainsAny(seg, "/.?#") {
			t.Errorf("%q escaped as %q", s, seg)
		}
		if back, err := url.PathUnescape(seg); err != nil || back != s {
			t.Errorf("%q -> %q -> %q, %v", s, seg, back, err)
		}
	}
}

// TestTableQuotesHostileNames: a client id with terminal escapes, tabs or
// newlines is quoted in a table, so it can neither rewrite the terminal
// nor shift the columns.
func TestTableQuotesHostileNames(t *testing.T) {
	var out bytes.Buffer
	hostile := "x\x1b[2J\ty\nz"
	err := Output{W: &out}.Sessions([]api.Session{{Tenant: "A", ClientID: hostile}, {Tenant: "A", ClientID: " padded"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\t") || strings.Count(out.String(), "\n") != 3 {
		t.Fatalf("table:\n%q", out.String())
	}
	if !strings.Contains(out.String(), `"x\x1b[2J\ty\nz"`) || !strings.Contains(out.String(), `" padded"`) {
		t.Fatalf("table:\n%s", out.String())
	}
}

// TestListFollowsCursorsAndErrors: a list follows next_cursor until the
// last page or the limit, sends the credentials, and an error answer
// becomes an APIError that matches ErrNotFound for a 404.
func TestListFollowsCursorsAndErrors(t *testing.T) {
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths = append(auths, r.Header.Get("Authorization"))
		switch {
		case r.URL.Path == "/api/v1/sessions" && r.URL.Query().Get("cursor") == "":
			w.Write([]byte(`{"items":[{"tenant":"A","client_id":"1"}],"next_cursor":"c1"}`))
		case r.URL.Path == "/api/v1/sessions" && r.URL.Query().Get("cursor") == "c1":
			if r.URL.Query().Get("tenant") != "A" || r.URL.Query().Get("client_id") != "m" {
				t.Errorf("query %v", r.URL.Query())
			}
			w.Write([]byte(`{"items":[{"tenant":"A","client_id":"2"}]}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"no such client"}`))
		}
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ss, err := c.Sessions(context.Background(), false, Tenant{Name: "A", Set: true}, "m", 0)
	if err != nil || len(ss) != 2 || ss[1].ClientID != "2" {
		t.Fatalf("%v %+v", err, ss)
	}
	if ss, err := c.Sessions(context.Background(), false, Tenant{Name: "A", Set: true}, "m", 1); err != nil || len(ss) != 1 {
		t.Fatalf("limit 1: %v %+v", err, ss)
	}
	_, err = c.Session(context.Background(), true, Tenant{}, "x")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Message != "no such client" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("error %v", err)
	}
	for _, a := range auths {
		if a != "Bearer tok" {
			t.Fatalf("Authorization %q", a)
		}
	}
	if _, err := New(Config{URL: "ftp://x"}); err == nil {
		t.Fatal("an ftp URL was accepted")
	}
}
