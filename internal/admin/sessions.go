package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// Clients, sessions and subscriptions. A client is a session with a
// connection: /clients lists the online ones, /sessions every one.

// deleteWait bounds how long deleting an online client's session waits
// for its connection to end.
const deleteWait = 10 * time.Second

// waitScan takes the right to walk the broker's sessions; false when the
// request ended first.
func (s *Server) waitScan(r *http.Request) bool {
	select {
	case s.scan <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Server) doneScan() { <-s.scan }

// sessionQuery reads the parameters of a session list: tenant, client_id
// (a prefix), limit and, unless cursorFields is 0, cursor.
func sessionQuery(w http.ResponseWriter, r *http.Request, p *principal, cursorFields int) (broker.SessionQuery, bool) {
	var q broker.SessionQuery
	tenant, named, ok := p.tenantOf(r)
	if !ok {
		writeError(w, http.StatusForbidden, "another tenant")
		return q, false
	}
	q.Tenant, q.AnyTenant = tenant, !named
	q.ClientPrefix = r.URL.Query().Get("client_id")
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return q, false
	}
	q.Limit = limit
	if cursorFields == 0 {
		return q, true
	}
	after, err := decodeCursor(r, cursorFields)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return q, false
	}
	if after != nil {
		q.HasAfter, q.AfterTenant, q.AfterClient = true, after[0], after[1]
	}
	return q, true
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request, p *principal) {
	s.listSessionsOf(w, r, p, true)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, p *principal) {
	s.listSessionsOf(w, r, p, false)
}

func (s *Server) listSessionsOf(w http.ResponseWriter, r *http.Request, p *principal, online bool) {
	q, ok := sessionQuery(w, r, p, 2)
	if !ok {
		return
	}
	q.OnlineOnly = online
	if !s.waitScan(r) {
		return
	}
	infos, more := s.o.Broker.Sessions(q)
	s.doneScan()
	page := api.Page[api.Session]{Items: make([]api.Session, len(infos))}
	for i := range infos {
		page.Items[i] = sessionDoc(&infos[i])
	}
	if more && len(infos) > 0 {
		last := infos[len(infos)-1]
		page.NextCursor = encodeCursor(last.Tenant, last.ClientID)
	}
	writeJSON(w, http.StatusOK, page)
}

// one finds the session a path names (client_id, and the tenant
// parameter); it answers 403 or 404 itself and returns false then.
func (s *Server) one(w http.ResponseWriter, r *http.Request, p *principal, online bool) (broker.SessionInfo, bool) {
	tenant, _, ok := p.tenantOf(r)
	if !ok {
		writeError(w, http.StatusForbidden, "another tenant")
		return broker.SessionInfo{}, false
	}
	info, found := s.o.Broker.Session(tenant, r.PathValue("client_id"))
	if !found || (online && !info.Online) {
		writeError(w, http.StatusNotFound, "no such client in tenant "+quoteTenant(tenant))
		return info, false
	}
	return info, true
}

func quoteTenant(t string) string { return `"` + t + `"` }

func (s *Server) getClient(w http.ResponseWriter, r *http.Request, p *principal) {
	if info, ok := s.one(w, r, p, true); ok {
		writeJSON(w, http.StatusOK, sessionDoc(&info))
	}
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, p *principal) {
	if info, ok := s.one(w, r, p, false); ok {
		writeJSON(w, http.StatusOK, sessionDoc(&info))
	}
}

func (s *Server) kickClient(w http.ResponseWriter, r *http.Request, p *principal) {
	tenant, _, ok := p.tenantOf(r)
	if !ok {
		writeError(w, http.StatusForbidden, "another tenant")
		return
	}
	if !s.o.Broker.Kick(tenant, r.PathValue("client_id")) {
		writeError(w, http.StatusNotFound, "no such client connected in tenant "+quoteTenant(tenant))
		return
	}
	writeJSON(w, http.StatusOK, api.Status{Status: "kicked"})
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, p *principal) {
	tenant, _, ok := p.tenantOf(r)
	if !ok {
		writeError(w, http.StatusForbidden, "another tenant")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), deleteWait)
	defer cancel()
	found, err := s.o.Broker.DeleteSession(ctx, tenant, r.PathValue("client_id"))
	switch {
	case !found:
		writeError(w, http.StatusNotFound, "no such session in tenant "+quoteTenant(tenant))
	case errors.Is(err, broker.ErrSessionBusy):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		s.log.Error("admin: deleting a session", "tenant", tenant, "client", r.PathValue("client_id"), "err", err)
		writeError(w, http.StatusInternalServerError, "the session could not be deleted: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, api.Status{Status: "deleted"})
	}
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, p *principal) {
	sq, ok := sessionQuery(w, r, p, 0)
	if !ok {
		return
	}
	q := broker.SubscriptionQuery{Sessions: sq, Limit: sq.Limit}
	q.Sessions.ClientPrefix = ""
	params := r.URL.Query()
	q.ClientID, q.Filter, q.Topic = params.Get("client_id"), params.Get("filter"), params.Get("topic")
	after, err := decodeCursor(r, 3)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if after != nil {
		q.HasAfter, q.AfterTenant, q.AfterClient, q.AfterFilter = true, after[0], after[1], after[2]
	}
	if !s.waitScan(r) {
		return
	}
	subs, next := s.o.Broker.Subscriptions(q)
	s.doneScan()
	page := api.Page[api.Subscription]{Items: make([]api.Subscription, len(subs))}
	for i := range subs {
		page.Items[i] = subscriptionDoc(&subs[i])
	}
	if next != nil {
		page.NextCursor = encodeCursor(next.Tenant, next.ClientID, next.Filter)
	}
	writeJSON(w, http.StatusOK, page)
}

func sessionDoc(in *broker.SessionInfo) api.Session {
	d := api.Session{
		Tenant: in.Tenant, ClientID: in.ClientID, Online: in.Online,
		RemoteAddr: in.RemoteAddr, Listener: in.Listener, KeepAliveSeconds: int(in.KeepAlive / time.Second),
		Persistent: in.Persistent, Queued: in.Queued, QueuedBytes: in.QueuedBytes, Inflight: in.Inflight,
		Dropped: in.Dropped, Subscriptions: in.Subscriptions,
	}
	if in.Online {
		d.ProtocolVersion = in.Version.String()
	}
	if !in.ExpiresAt.IsZero() {
		t := in.ExpiresAt.UTC()
		d.ExpiresAt = &t
	}
	for i := range in.Subs {
		d.SubscriptionList = append(d.SubscriptionList, subscriptionDoc(&in.Subs[i]))
	}
	return d
}

func subscriptionDoc(s *broker.SubscriptionInfo) api.Subscription {
	return api.Subscription{Tenant: s.Tenant, ClientID: s.ClientID, Filter: s.Filter, QoS: int(s.QoS), NoLocal: s.NoLocal,
		RetainAsPublished: s.RetainAsPublished, RetainHandling: int(s.RetainHandling), SubscriptionID: s.SubID}
}
