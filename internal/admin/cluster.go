package admin

import (
	"context"
	"net/http"
	"time"
)

// clusterTimeout bounds how long GET /api/v1/cluster waits for the other
// nodes' answers.
const clusterTimeout = 5 * time.Second

func (s *Server) cluster(w http.ResponseWriter, r *http.Request, _ *principal) {
	if s.o.Cluster == nil {
		writeError(w, http.StatusNotFound, "this broker is not part of a cluster (no cluster: section)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	c, err := s.o.Cluster(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cluster status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}
