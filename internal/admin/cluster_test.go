package admin_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// sampleCluster is a cluster document as a node would report it.
func sampleCluster() *api.Cluster {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &api.Cluster{Name: "petrel", Node: "n1", Ready: true, MetaLeader: "n2",
		Nodes: []api.ClusterNode{{Name: "n1", Self: true, Connected: true, Connections: 3},
			{Name: "n2", Connected: true, LastSeen: &seen, Connections: -1}},
		Assets: []api.ClusterAsset{{Name: "PETREL_RETAINED", Leader: "n2",
			Replicas: []api.ClusterReplica{{Name: "n1", Current: true, ActiveSeconds: 0.5, Lag: 2}}}}}
}

// TestClusterEndpoint: GET /api/v1/cluster reports what the node's
// cluster says, to operator principals only: a tenant's principal gets
// 403, since the document names every node's connections (security.md,
// admin API). One node without a cluster answers 404; a cluster that does
// not answer, 503.
func TestClusterEndpoint(t *testing.T) {
	svc := authService(t)
	var fail error
	report := func(context.Context) (*api.Cluster, error) { return sampleCluster(), fail }
	e := start(t, broker.Options{Authenticator: svc, Authorizer: svc},
		admin.Options{Authenticator: svc, OperatorTenant: "ops", Cluster: report}, "")

	var got api.Cluster
	e.must("GET", "/api/v1/cluster", cred{user: opViewer, pass: password}, "", http.StatusOK, &got)
	if !reflect.DeepEqual(&got, sampleCluster()) {
		t.Fatalf("got %+v, want %+v", got, sampleCluster())
	}
	for _, c := range []cred{{user: aViewer, pass: password}, {user: aAdmin, pass: password}, {bearer: token(t, "A", api.RoleAdmin)}} {
		e.must("GET", "/api/v1/cluster", c, "", http.StatusForbidden, nil)
	}
	e.must("GET", "/api/v1/cluster", none, "", http.StatusUnauthorized, nil)
	fail = errors.New("no responders")
	e.must("GET", "/api/v1/cluster", cred{user: opAdmin, pass: password}, "", http.StatusServiceUnavailable, nil)

	one := start(t, broker.Options{}, admin.Options{}, "")
	one.must("GET", "/api/v1/cluster", none, "", http.StatusNotFound, nil)
}
