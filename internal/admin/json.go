package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing to do
}

// writeError answers status with an api.Error.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.Error{Error: msg})
}

// limitParam reads the limit parameter: api.DefaultLimit when absent,
// capped at api.MaxLimit.
func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return api.DefaultLimit, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit %q: want a whole number from 1", v)
	}
	return int(min(n, api.MaxLimit)), nil
}

// maxCursorFields bounds a cursor's strings: a session key and a filter.
const maxCursorFields = 3

// encodeCursor makes the opaque cursor of the last item of a page.
func encodeCursor(fields ...string) string {
	b, _ := json.Marshal(fields) // strings always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = errors.New("cursor is not one this API returned")

// decodeCursor reads the cursor parameter: nil when absent, else exactly
// n strings.
func decodeCursor(r *http.Request, n int) ([]string, error) {
	v := r.URL.Query().Get("cursor")
	if v == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, errCursor
	}
	var fields []string
	if err := json.Unmarshal(b, &fields); err != nil || len(fields) != n || n > maxCursorFields {
		return nil, errCursor
	}
	return fields, nil
}
