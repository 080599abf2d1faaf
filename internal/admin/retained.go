package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/packet"
)

// Retained messages, publish, stats, reload and the health probes.

func (s *Server) listRetained(w http.ResponseWriter, r *http.Request, p *principal) {
	filter := r.URL.Query().Get("filter")
	if filter == "" {
		filter = "#"
		if p.scoped {
			filter = p.tenant + "/#"
		}
	}
	if !p.allowsTopic(filter) {
		writeError(w, http.StatusForbidden, "a filter outside the tenant's topics ("+p.tenant+"/...)")
		return
	}
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	after, err := decodeCursor(r, 1)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var from string
	if after != nil {
		from = after[0]
	}
	if !s.waitScan(r) {
		return
	}
	items, more, err := s.o.Broker.Retained(filter, from, limit)
	s.doneScan()
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("filter %q: %v", filter, err))
		return
	}
	page := api.Page[api.Retained]{Items: make([]api.Retained, len(items))}
	for i := range items {
		page.Items[i] = retainedDoc(&items[i])
	}
	if more {
		page.NextCursor = encodeCursor(items[len(items)-1].Topic)
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getRetained(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("topic")
	if !p.allowsTopic(name) {
		writeError(w, http.StatusForbidden, "a topic outside the tenant's topics")
		return
	}
	m, ok := s.o.Broker.RetainedMessage(name)
	if !ok {
		writeError(w, http.StatusNotFound, "no retained message on "+name)
		return
	}
	writeJSON(w, http.StatusOK, retainedDoc(&m))
}

func (s *Server) deleteRetained(w http.ResponseWriter, r *http.Request, p *principal) {
	name := r.PathValue("topic")
	if !p.allowsTopic(name) {
		writeError(w, http.StatusForbidden, "a topic outside the tenant's topics")
		return
	}
	found, err := s.o.Broker.DeleteRetained(name)
	switch {
	case !found:
		writeError(w, http.StatusNotFound, "no retained message on "+name)
	case err != nil:
		s.log.Error("admin: deleting a retained message", "topic", name, "err", err)
		writeError(w, http.StatusInternalServerError, "the store refused the delete: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, api.Status{Status: "deleted"})
	}
}

func retainedDoc(m *broker.RetainedInfo) api.Retained {
	d := api.Retained{Topic: m.Topic, QoS: int(m.QoS), PayloadBytes: len(m.Payload)}
	if utf8.Valid(m.Payload) {
		d.Payload, d.PayloadEncoding = string(m.Payload), api.EncodingUTF8
	} else {
		d.Payload, d.PayloadEncoding = base64.StdEncoding.EncodeToString(m.Payload), api.EncodingBase64
	}
	if !m.Expiry.IsZero() {
		t := m.Expiry.UTC()
		d.ExpiresAt = &t
	}
	if m.Properties != nil {
		d.ContentType = m.Properties.ContentType
	}
	return d
}

// maxUserProperties bounds the user properties of one publish.
const maxUserProperties = 64

func (s *Server) publish(w http.ResponseWriter, r *http.Request, p *principal) {
	var req api.PublishRequest
	if !readJSON(w, r, &req) {
		return
	}
	m, err := adminMessage(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := s.o.Broker.PublishAs(p.id, m)
	switch {
	case errors.Is(err, broker.ErrPublishNotAuthorized):
		writeError(w, http.StatusForbidden, "the authorizer refused publishing to "+req.Topic)
	case errors.Is(err, broker.ErrBadTopic):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		s.log.Error("admin: publish", "topic", req.Topic, "err", err)
		writeError(w, http.StatusInternalServerError, "the store refused the message: "+err.Error())
	default:
		writeJSON(w, http.StatusOK, api.PublishResult{Queued: n})
	}
}

// adminMessage checks a publish request and makes the broker's message.
func adminMessage(req *api.PublishRequest) (broker.AdminMessage, error) {
	m := broker.AdminMessage{Topic: req.Topic, Retain: req.Retain}
	if req.QoS < 0 || req.QoS > 2 {
		return m, fmt.Errorf("qos %d: want 0, 1 or 2", req.QoS)
	}
	m.QoS = byte(req.QoS)
	switch req.PayloadEncoding {
	case "", api.EncodingUTF8:
		m.Payload = []byte(req.Payload)
	case api.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(req.Payload)
		if err != nil {
			return m, fmt.Errorf("payload: not base64: %v", err)
		}
		m.Payload = b
	default:
		return m, fmt.Errorf("payload_encoding %q: want utf8 or base64", req.PayloadEncoding)
	}
	if len(req.UserProperties) > maxUserProperties {
		return m, fmt.Errorf("%d user properties: at most %d", len(req.UserProperties), maxUserProperties)
	}
	m.Expiry = time.Duration(req.MessageExpiryInterval) * time.Second
	var props packet.Properties
	if req.ContentType != "" {
		props.Set(packet.PropContentType)
		props.ContentType = req.ContentType
	}
	if req.ResponseTopic != "" {
		if strings.ContainsAny(req.ResponseTopic, "+#\x00") {
			// A Response Topic is a topic name, without wildcards [MQTT-3.3.2-14].
			return m, fmt.Errorf("response_topic %q: a topic name has no wildcards", req.ResponseTopic)
		}
		props.Set(packet.PropResponseTopic)
		props.ResponseTopic = req.ResponseTopic
	}
	for _, up := range req.UserProperties {
		props.UserProperties = append(props.UserProperties, packet.UserProperty{Key: up.Key, Value: up.Value})
	}
	if !props.IsZero() {
		m.Properties = &props
	}
	return m, nil
}

// readJSON decodes a request body of at most maxBodyBytes into v, and
// answers 400 or 413 itself when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON document")
	}
	if err == nil {
		if _, rest := io.Copy(io.Discard, r.Body); rest != nil {
			err = rest
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBodyBytes))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request, _ *principal) {
	st := s.o.Broker.Stats()
	writeJSON(w, http.StatusOK, api.Stats{
		Connections: st.Connections, Clients: st.Clients, Sessions: st.Sessions, Subscriptions: st.Subscriptions,
		Retained: st.Retained, MessagesReceived: st.MessagesReceived, MessagesSent: st.MessagesSent,
		MessagesDropped: st.MessagesDropped, BytesSent: st.BytesSent, StoreErrors: st.StoreErrors, Parked: st.Parked,
		UptimeSeconds: int64(s.o.Now().Sub(s.started) / time.Second),
	})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, _ *principal) {
	if s.o.Reload == nil {
		writeError(w, http.StatusNotImplemented, "this broker has no reload")
		return
	}
	if err := s.o.Reload(r.Context()); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "reload refused: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, api.Status{Status: "reloaded"})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *principal) {
	if s.o.Metrics == nil {
		writeError(w, http.StatusNotFound, "no metrics handler")
		return
	}
	s.o.Metrics.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ *principal) {
	writeJSON(w, http.StatusOK, api.Status{Status: "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request, _ *principal) {
	err := s.ready()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Status{Status: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, api.Status{Status: "ok"})
}

func (s *Server) ready() error {
	if s.o.Ready != nil {
		return s.o.Ready()
	}
	if s.o.Broker.Serving() == 0 {
		return errors.New("no listener is being served")
	}
	return nil
}
