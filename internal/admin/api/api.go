// Package api holds the JSON documents of Petrel's admin REST API
// (/api/v1, docs/api/openapi.yaml): what internal/admin serves and
// internal/ctl reads. Field names are the wire names; every session,
// client and subscription names its tenant and client id together.
package api

import "time"

// Roles a principal needs for the admin API: a viewer may read (GET), an
// admin may also change state (kick, delete, publish, reload).
const (
	RoleAdmin  = "PETREL_ADMIN"
	RoleViewer = "PETREL_VIEWER"
)

// Pagination bounds: a list returns DefaultLimit items unless the request
// asks for another number, and never more than MaxLimit.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of a list. NextCursor, when not empty, is passed as
// the cursor parameter to get the next page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Session is a session, online (a client) or offline. Clients and
// sessions are the same documents: a client is a session with a
// connection.
type Session struct {
	Tenant   string `json:"tenant"`
	ClientID string `json:"client_id"`
	Online   bool   `json:"online"`
	// The connection's, when online.
	ProtocolVersion  string `json:"protocol_version,omitempty"` // "3.1", "3.1.1", "5.0"
	RemoteAddr       string `json:"remote_addr,omitempty"`
	Listener         string `json:"listener,omitempty"`
	KeepAliveSeconds int    `json:"keep_alive_seconds"`
	// Persistent: the session outlives its connection.
	Persistent bool `json:"persistent"`
	// ExpiresAt: when an offline 5.0 session expires; absent for never.
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	Queued        int        `json:"queued"`
	QueuedBytes   int        `json:"queued_bytes"`
	Inflight      int        `json:"inflight"`
	Dropped       uint64     `json:"dropped"`
	Subscriptions int        `json:"subscriptions"`
	// SubscriptionList is filled in the detail of one session only.
	SubscriptionList []Subscription `json:"subscription_list,omitempty"`
}

// Subscription is one subscription of one session.
type Subscription struct {
	Tenant            string `json:"tenant"`
	ClientID          string `json:"client_id"`
	Filter            string `json:"filter"`
	QoS               int    `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	RetainHandling    int    `json:"retain_handling"`
	SubscriptionID    uint32 `json:"subscription_id,omitempty"`
}

// Payload encodings of Retained.PayloadEncoding and
// PublishRequest.PayloadEncoding.
const (
	EncodingUTF8   = "utf8"
	EncodingBase64 = "base64"
)

// Retained is a retained message. The payload is UTF-8 text when it is
// valid UTF-8, base64 otherwise, as PayloadEncoding says.
type Retained struct {
	Topic           string     `json:"topic"`
	Payload         string     `json:"payload"`
	PayloadEncoding string     `json:"payload_encoding"`
	PayloadBytes    int        `json:"payload_bytes"`
	QoS             int        `json:"qos"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
	ContentType     string     `json:"content_type,omitempty"`
}

// UserProperty is a 5.0 user property.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PublishRequest is the body of POST /api/v1/publish.
type PublishRequest struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	// PayloadEncoding is "utf8" (default) or "base64".
	PayloadEncoding string `json:"payload_encoding,omitempty"`
	QoS             int    `json:"qos"`
	Retain          bool   `json:"retain"`
	// 5.0 properties the subscribers receive.
	MessageExpiryInterval uint32         `json:"message_expiry_interval,omitempty"`
	ContentType           string         `json:"content_type,omitempty"`
	ResponseTopic         string         `json:"response_topic,omitempty"`
	UserProperties        []UserProperty `json:"user_properties,omitempty"`
}

// PublishResult answers a publish: the number of sessions the message was
// queued for.
type PublishResult struct {
	Queued int `json:"queued"`
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	Connections      uint64 `json:"connections"`
	Clients          int    `json:"clients"`
	Sessions         int    `json:"sessions"`
	Subscriptions    int    `json:"subscriptions"`
	Retained         int    `json:"retained"`
	MessagesReceived uint64 `json:"messages_received"`
	MessagesSent     uint64 `json:"messages_sent"`
	MessagesDropped  uint64 `json:"messages_dropped"`
	BytesSent        uint64 `json:"bytes_sent"`
	StoreErrors      uint64 `json:"store_errors"`
	Parked           int    `json:"parked"`
	UptimeSeconds    int64  `json:"uptime_seconds"`
}

// Cluster is GET /api/v1/cluster: the cluster as the node that answers
// sees it.
type Cluster struct {
	Name string `json:"name"` // the cluster's name
	Node string `json:"node"` // the node that answered
	// Ready: the node's replicated assets exist and it follows the
	// message log, so sessions can be claimed (CONNECTs accepted).
	Ready bool `json:"ready"`
	// MetaLeader is the node leading the replicated metadata; "" when
	// none (no quorum).
	MetaLeader string         `json:"meta_leader"`
	Nodes      []ClusterNode  `json:"nodes"`  // this node first
	Assets     []ClusterAsset `json:"assets"` // the replicated assets
	// Counters are the answering node's cluster counters since it
	// started.
	Counters ClusterCounters `json:"counters"`
}

// ClusterCounters are a node's cluster counters (docs/clustering.md,
// "Operations").
type ClusterCounters struct {
	Forwarded       uint64 `json:"forwarded"`        // live messages sent to the other nodes
	ForwardFailed   uint64 `json:"forward_failed"`   // not sent: the in-process connection refused them
	TooLong         uint64 `json:"too_long"`         // not sent: topic too long for a subject
	TooLarge        uint64 `json:"too_large"`        // not sent: body over the NATS payload limit
	Received        uint64 `json:"received"`         // live messages from other nodes handed to the broker
	Duplicates      uint64 `json:"duplicates"`       // extra copies of a message dropped (one per further matching filter)
	SlowConsumer    uint64 `json:"slow_consumer"`    // times an inbox overflowed
	InboxDropped    uint64 `json:"inbox_dropped"`    // messages dropped by full inboxes
	Malformed       uint64 `json:"malformed"`        // messages or requests from other nodes that did not decode
	Unbound         uint64 `json:"unbound"`          // messages received before the broker was bound
	Retained        uint64 `json:"retained"`         // retained changes replicated
	RetainFailed    uint64 `json:"retain_failed"`    // retained changes not replicated
	RetainApplied   uint64 `json:"retain_applied"`   // retained changes from other nodes applied
	KicksSent       uint64 `json:"kicks_sent"`       // takeover kicks sent to other nodes
	KicksReceived   uint64 `json:"kicks_received"`   // takeover kicks received
	KicksMissed     uint64 `json:"kicks_missed"`     // takeovers whose kick did not arrive (a partition), applied when the claim was seen
	ReleaseDropped  uint64 `json:"release_dropped"`  // session releases not written: too many waiting
	WatchFailed     uint64 `json:"watch_failed"`     // subscriptions the fabric could not make
	PurgesScheduled uint64 `json:"purges_scheduled"` // tombstones written, queued for their purge
	Purged          uint64 `json:"purged"`           // tombstones purged
	PurgeFailed     uint64 `json:"purge_failed"`     // tombstone purges that failed
	PurgeDropped    uint64 `json:"purge_dropped"`    // tombstones not queued for their purge: too many waiting
	Logged          uint64 `json:"logged"`           // messages written to the message log
	LogNoQuorum     uint64 `json:"log_no_quorum"`    // not logged: no quorum in time
	LogRetried      uint64 `json:"log_retried"`      // written again after an acknowledgement timed out or no leader answered
	LogFull         uint64 `json:"log_full"`         // not logged: too many waiting for their quorum
	LogNotReady     uint64 `json:"log_not_ready"`    // not logged: JetStream not ready
	LogClosed       uint64 `json:"log_closed"`       // not logged: the node was closing
	LogTooLarge     uint64 `json:"log_too_large"`    // not logged: message or topic too large
	LogRefused      uint64 `json:"log_refused"`      // not logged: JetStream refused the write
	LogPending      uint64 `json:"log_pending"`      // waiting for their quorum now
	LogFollowed     uint64 `json:"log_followed"`     // messages of the log handed to the broker
	FollowerResets  uint64 `json:"follower_resets"`  // times the log's follower started over after a gap
}

// ClusterNode is one node of the cluster.
type ClusterNode struct {
	Name      string `json:"name"`
	Self      bool   `json:"self"`      // the node that answered
	Connected bool   `json:"connected"` // a route to it is up
	// LastSeen is the last activity on its routes; absent when none.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Connections is its number of client connections, -1 when unknown.
	Connections int `json:"connections"`
}

// ClusterAsset is one replicated asset: its leader and followers.
type ClusterAsset struct {
	Name     string           `json:"name"`
	Leader   string           `json:"leader"`
	Replicas []ClusterReplica `json:"replicas"`
	Error    string           `json:"error,omitempty"` // why the figures are missing
}

// ClusterReplica is one follower of an asset.
type ClusterReplica struct {
	Name          string  `json:"name"`
	Current       bool    `json:"current"` // caught up
	Offline       bool    `json:"offline"` // not seen recently
	ActiveSeconds float64 `json:"active_seconds"`
	Lag           uint64  `json:"lag"` // operations behind the leader
}

// Status answers health probes, reload and actions without a document of
// their own.
type Status struct {
	Status string `json:"status"` // "ok", or what is wrong
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
}
