package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
)

// Output writes what a command got: JSON as the API gave it, or a table.
type Output struct {
	W    io.Writer
	JSON bool
}

// json writes v indented.
func (o Output) json(v any) error {
	enc := json.NewEncoder(o.W)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes rows under header, columns aligned.
func (o Output) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(o.W, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = printable(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printable quotes a value with leading or trailing spaces or with a
// character that is not printable (tabs, newlines, escape sequences), so
// that a client id or topic chosen by a device can neither rewrite the
// operator's terminal nor shift the table's columns; "" shows as "-".
func printable(s string) string {
	if s == "" {
		return "-"
	}
	if strings.TrimSpace(s) != s {
		return strconv.QuoteToASCII(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// Sessions writes a list of clients or sessions.
func (o Output) Sessions(ss []api.Session) error {
	if o.JSON {
		return o.json(ss)
	}
	rows := make([][]string, len(ss))
	for i, s := range ss {
		rows[i] = []string{s.Tenant, s.ClientID, yes(s.Online), s.ProtocolVersion, s.RemoteAddr, yes(s.Persistent),
			strconv.Itoa(s.Subscriptions), strconv.Itoa(s.Queued), strconv.Itoa(s.Inflight), strconv.FormatUint(s.Dropped, 10),
			when(s.ExpiresAt)}
	}
	return o.table([]string{"TENANT", "CLIENT ID", "ONLINE", "VERSION", "REMOTE", "PERSISTENT", "SUBS", "QUEUED", "INFLIGHT",
		"DROPPED", "EXPIRES"}, rows)
}

// Session writes one session with its subscriptions.
func (o Output) Session(s api.Session) error {
	if o.JSON {
		return o.json(s)
	}
	pairs := [][]string{
		{"tenant", s.Tenant}, {"client id", s.ClientID}, {"online", yes(s.Online)}, {"protocol", s.ProtocolVersion},
		{"remote", s.RemoteAddr}, {"listener", s.Listener}, {"keepalive", strconv.Itoa(s.KeepAliveSeconds) + "s"},
		{"persistent", yes(s.Persistent)}, {"expires", when(s.ExpiresAt)}, {"queued", strconv.Itoa(s.Queued)},
		{"queued bytes", strconv.Itoa(s.QueuedBytes)}, {"inflight", strconv.Itoa(s.Inflight)},
		{"dropped", strconv.FormatUint(s.Dropped, 10)}, {"subscriptions", strconv.Itoa(s.Subscriptions)},
	}
	tw := tabwriter.NewWriter(o.W, 0, 4, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], printable(p[1]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.SubscriptionList) == 0 {
		return nil
	}
	fmt.Fprintln(o.W)
	return o.subscriptionTable(s.SubscriptionList)
}

// Subscriptions writes a list of subscriptions.
func (o Output) Subscriptions(subs []api.Subscription) error {
	if o.JSON {
		return o.json(subs)
	}
	return o.subscriptionTable(subs)
}

func (o Output) subscriptionTable(subs []api.Subscription) error {
	rows := make([][]string, len(subs))
	for i, s := range subs {
		rows[i] = []string{s.Tenant, s.ClientID, s.Filter, strconv.Itoa(s.QoS), yes(s.NoLocal), yes(s.RetainAsPublished),
			strconv.Itoa(s.RetainHandling)}
	}
	return o.table([]string{"TENANT", "CLIENT ID", "FILTER", "QOS", "NO LOCAL", "RETAIN AS PUBLISHED", "RETAIN HANDLING"}, rows)
}

// maxShownPayload bounds the payload a table shows.
const maxShownPayload = 60

// Retained writes a list of retained messages.
func (o Output) Retained(rs []api.Retained) error {
	if o.JSON {
		return o.json(rs)
	}
	rows := make([][]string, len(rs))
	for i, r := range rs {
		p := r.Payload
		if r.PayloadEncoding == api.EncodingBase64 {
			p = "base64:" + p
		}
		if len(p) > maxShownPayload {
			p = p[:maxShownPayload] + "..."
		}
		rows[i] = []string{r.Topic, strconv.Itoa(r.QoS), strconv.Itoa(r.PayloadBytes), when(r.ExpiresAt), p}
	}
	return o.table([]string{"TOPIC", "QOS", "BYTES", "EXPIRES", "PAYLOAD"}, rows)
}

// RetainedMessage writes one retained message: its payload as it is (or
// JSON).
func (o Output) RetainedMessage(r api.Retained) error {
	if o.JSON {
		return o.json(r)
	}
	_, err := fmt.Fprintln(o.W, r.Payload)
	return err
}

// Stats writes the broker's counters.
func (o Output) Stats(s api.Stats) error {
	if o.JSON {
		return o.json(s)
	}
	rows := [][]string{
		{"clients", strconv.Itoa(s.Clients)}, {"sessions", strconv.Itoa(s.Sessions)},
		{"subscriptions", strconv.Itoa(s.Subscriptions)}, {"retained", strconv.Itoa(s.Retained)},
		{"connections", strconv.FormatUint(s.Connections, 10)},
		{"messages received", strconv.FormatUint(s.MessagesReceived, 10)},
		{"messages sent", strconv.FormatUint(s.MessagesSent, 10)},
		{"messages dropped", strconv.FormatUint(s.MessagesDropped, 10)},
		{"bytes sent", strconv.FormatUint(s.BytesSent, 10)}, {"store errors", strconv.FormatUint(s.StoreErrors, 10)},
		{"parked", strconv.Itoa(s.Parked)}, {"uptime", (time.Duration(s.UptimeSeconds) * time.Second).String()},
	}
	return o.table([]string{"STAT", "VALUE"}, rows)
}

// Cluster writes the cluster's nodes (connections, routes) and its
// replicated assets (leader, followers' lag).
func (o Output) Cluster(c api.Cluster) error {
	if o.JSON {
		return o.json(c)
	}
	ready := "ready"
	if !c.Ready {
		ready = "not ready (no quorum yet: CONNECTs are refused)"
	}
	fmt.Fprintf(o.W, "cluster %s, node %s, %s, meta leader %s\n\n", printable(c.Name), printable(c.Node), ready, printable(c.MetaLeader))
	var rows [][]string
	for _, n := range c.Nodes {
		conns := strconv.Itoa(n.Connections)
		if n.Connections < 0 {
			conns = "?"
		}
		route := yes(n.Connected)
		if n.Self {
			route = "self"
		}
		rows = append(rows, []string{n.Name, route, conns, when(n.LastSeen)})
	}
	if err := o.table([]string{"NODE", "ROUTE", "CONNECTIONS", "LAST SEEN"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(o.W)
	rows = rows[:0]
	for _, a := range c.Assets {
		if a.Error != "" {
			rows = append(rows, []string{a.Name, a.Leader, "-", "-", a.Error})
			continue
		}
		if len(a.Replicas) == 0 {
			rows = append(rows, []string{a.Name, a.Leader, "-", "-", ""})
		}
		for _, r := range a.Replicas {
			state := "current"
			switch {
			case r.Offline:
				state = "offline"
			case !r.Current:
				state = "catching up"
			}
			rows = append(rows, []string{a.Name, a.Leader, r.Name, strconv.FormatUint(r.Lag, 10), state})
		}
	}
	if err := o.table([]string{"ASSET", "LEADER", "FOLLOWER", "LAG", "STATE"}, rows); err != nil {
		return err
	}
	k := c.Counters
	_, err := fmt.Fprintf(o.W, "\nforwarded %d, received %d, duplicates %d, inbox dropped %d (slow consumer %d), forward failed %d, malformed %d; retained %d (failed %d, applied %d); kicks sent %d, received %d, missed %d\n",
		k.Forwarded, k.Received, k.Duplicates, k.InboxDropped, k.SlowConsumer, k.ForwardFailed, k.Malformed,
		k.Retained, k.RetainFailed, k.RetainApplied, k.KicksSent, k.KicksReceived, k.KicksMissed)
	return err
}

// Done writes a one-line confirmation (or {"status": ...} with JSON).
func (o Output) Done(status string) error {
	if o.JSON {
		return o.json(api.Status{Status: status})
	}
	_, err := fmt.Fprintln(o.W, status)
	return err
}

// Published writes a publish's outcome.
func (o Output) Published(r api.PublishResult) error {
	if o.JSON {
		return o.json(r)
	}
	_, err := fmt.Fprintf(o.W, "published; queued for %d sessions\n", r.Queued)
	return err
}
