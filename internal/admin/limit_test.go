package admin

import (
	"net/http/httptest"
	"testing"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// TestLimitParam: a page size is api.DefaultLimit when not asked for and
// never more than api.MaxLimit, however large the request's.
func TestLimitParam(t *testing.T) {
	for _, tt := range []struct {
		q    string
		want int
		bad  bool
	}{
		{"", api.DefaultLimit, false},
		{"limit=7", 7, false},
		{"limit=1000", api.MaxLimit, false},
		{"limit=1001", api.MaxLimit, false},
		{"limit=9223372036854775807", api.MaxLimit, false},
		{"limit=0", 0, true},
		{"limit=-5", 0, true},
		{"limit=1e9", 0, true},
	} {
		got, err := limitParam(httptest.NewRequest("GET", "/api/v1/sessions?"+tt.q, nil))
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("%q: %d, %v; want %d (error %v)", tt.q, got, err, tt.want, tt.bad)
		}
	}
}
