package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/store/diskstore"
)

const storeUsage = `Usage: petrel store inspect [--data DIR] [--skip-corrupt]

Prints the sessions of a stopped broker's data directory (tenant, "-"
for none, and client id; protocol version, session expiry, subscriptions, queued, inflight and
inbound QoS 2 messages) and the number of retained messages. The store is
opened read-only; a running broker holds its lock, so stop it first.
Exits 1 on a corrupt store, naming the record.
`

// storeMain runs petrel store SUBCOMMAND.
func storeMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "inspect" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, storeUsage)
			return 0
		}
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	fs := flag.NewFlagSet("petrel store inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	skip := fs.Bool("skip-corrupt", false, "skip and count corrupt records instead of failing")
	fs.Usage = func() {
		fmt.Fprint(stderr, storeUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := diskstore.Open(*data, diskstore.Options{ReadOnly: true, SkipCorrupt: *skip, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "petrel store inspect: %v\n", err)
		return 1
	}
	var sum storeSummary
	err = s.Load(context.Background(), &sum)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel store inspect: %v\n", err)
		return 1
	}
	sum.print(stdout)
	if n := s.Corrupt(); n > 0 {
		fmt.Fprintf(stdout, "corrupt records skipped: %d\n", n)
	}
	return 0
}

// storeSummary is the Restorer of inspect: one row per session, counts
// only, so that inspecting a large store holds no message.
type storeSummary struct {
	rows     []sessionRow
	index    map[string]int // ClientID -> rows index
	retained int
}

type sessionRow struct {
	s                               broker.StoredSession // lists empty
	subs, queued, inflight, inbound int
}

func (m *storeSummary) RestoreSession(s *broker.StoredSession) error {
	if m.index == nil {
		m.index = make(map[string]int)
	}
	m.index[s.ClientID] = len(m.rows)
	m.rows = append(m.rows, sessionRow{s: broker.StoredSession{ClientID: s.ClientID, Version: s.Version,
		ExpiryInterval: s.ExpiryInterval, DisconnectedAt: s.DisconnectedAt}})
	return nil
}

func (m *storeSummary) row(clientID string) (*sessionRow, error) {
	i, ok := m.index[clientID]
	if !ok {
		return nil, fmt.Errorf("record of unknown session %q", clientID)
	}
	return &m.rows[i], nil
}

func (m *storeSummary) RestoreSubscription(clientID string, _ *broker.StoredSubscription) error {
	r, err := m.row(clientID)
	if err == nil {
		r.subs++
	}
	return err
}

func (m *storeSummary) RestoreDelivery(clientID string, d *broker.StoredDelivery) error {
	r, err := m.row(clientID)
	if err == nil {
		if d.State == broker.Queued {
			r.queued++
		} else {
			r.inflight++
		}
	}
	return err
}

func (m *storeSummary) RestoreInbound(clientID string, _ uint16, _ uint64) error {
	r, err := m.row(clientID)
	if err == nil {
		r.inbound++
	}
	return err
}

func (m *storeSummary) RestoreRetained(*broker.StoredMessage) error {
	m.retained++
	return nil
}

// print writes the session table and the totals.
func (m *storeSummary) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tCLIENT ID\tVERSION\tEXPIRY\tDISCONNECTED\tSUBS\tQUEUED\tINFLIGHT\tINBOUND")
	var queued int
	// By tenant, then client id: a tenant's sessions together.
	rows := slices.Clone(m.rows)
	slices.SortFunc(rows, func(a, b sessionRow) int {
		ta, ia := broker.SplitSessionKey(a.s.ClientID)
		tb, ib := broker.SplitSessionKey(b.s.ClientID)
		return cmp.Or(cmp.Compare(ta, tb), cmp.Compare(ia, ib))
	})
	for _, r := range rows {
		s := &r.s
		queued += r.queued + r.inflight
		expiry := "never"
		if s.ExpiryInterval != broker.NoExpiry {
			expiry = (time.Duration(s.ExpiryInterval) * time.Second).String()
		}
		disc := "-"
		if !s.DisconnectedAt.IsZero() {
			disc = s.DisconnectedAt.UTC().Format(time.RFC3339)
		}
		// Client ids are a namespace per tenant: the record's key names both.
		tenant, id := broker.SplitSessionKey(s.ClientID)
		shownTenant := "-" // none: no authentication, or written before tenants
		if tenant != "" {
			shownTenant = strconv.Quote(tenant)
		}
		fmt.Fprintf(tw, "%s\t%q\t%v\t%s\t%s\t%d\t%d\t%d\t%d\n", shownTenant, id, s.Version, expiry, disc,
			r.subs, r.queued, r.inflight, r.inbound)
	}
	_ = tw.Flush() // errors of w show in the lines below as well
	fmt.Fprintf(w, "sessions: %d, queued messages: %d, retained messages: %d\n", len(m.rows), queued, m.retained)
}
