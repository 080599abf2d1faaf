package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/admin/api"
	"github.com/petrel-mqtt/petrel/internal/ctl"
)

const ctlUsage = `petrel ctl: the admin API of a running broker (docs/api/openapi.yaml).

Usage:
  petrel ctl [flags] COMMAND [command flags] [ARGS]

Commands:
  clients [--client-id PREFIX] [--limit N]   connected clients
  client ID                                  one client, with its subscriptions
  kick ID                                    disconnect a client (5.0: DISCONNECT 0x98)
  sessions [--client-id PREFIX] [--limit N]  sessions, offline ones too
  session ID                                 one session, with its subscriptions
  delete-session ID                          discard a session (kicks its client)
  subscriptions [--client-id ID] [--filter F] [--topic T] [--limit N]
  retained [--filter F] [--limit N]          retained messages
  retained-get TOPIC                         one retained message's payload
  retained-delete TOPIC                      remove a retained message (and from the store)
  publish -t TOPIC -m MESSAGE [-q QOS] [-r] [--base64] [--content-type T] [--expiry S] [--user-property K=V]
  stats                                      the broker's counters
  cluster                                    the cluster: nodes, leaders, replication lag (also petrel cluster status)
  reload                                     reload the configuration (as SIGHUP)

Flags (before or after the command):
  --url URL         admin listener (PETREL_ADMIN_URL; default ` + ctl.DefaultURL + `)
  --user NAME       basic authentication user (PETREL_ADMIN_USER)
  --password PASS   its password (PETREL_ADMIN_PASSWORD)
  --token JWT       Bearer token instead (PETREL_ADMIN_TOKEN)
  --cacert FILE     CA certificate of an https:// listener
  --tenant T        the tenant of the clients named (lists: only this tenant)
  --json            JSON output instead of tables
  --timeout D       per request (default 30s)
`

// ctlFlags are the flags every petrel ctl command takes.
type ctlFlags struct {
	cfg     ctl.Config
	tenant  ctl.Tenant
	json    bool
	timeout time.Duration
}

// register adds the common flags to fs; a value already set (by the
// environment or before the command) is the default.
func (f *ctlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cfg.URL, "url", f.cfg.URL, "admin listener URL")
	fs.StringVar(&f.cfg.User, "user", f.cfg.User, "basic authentication user")
	fs.StringVar(&f.cfg.Password, "password", f.cfg.Password, "basic authentication password")
	fs.StringVar(&f.cfg.Token, "token", f.cfg.Token, "Bearer token (a JWT)")
	fs.StringVar(&f.cfg.CAFile, "cacert", f.cfg.CAFile, "CA certificate file for https")
	fs.Func("tenant", "tenant of the clients named", func(s string) error {
		f.tenant = ctl.Tenant{Name: s, Set: true}
		return nil
	})
	fs.BoolVar(&f.json, "json", f.json, "JSON output")
	fs.DurationVar(&f.timeout, "timeout", f.timeout, "per request timeout")
}

func ctlMain(args []string, environ []string, stdout, stderr io.Writer) int {
	f := &ctlFlags{timeout: 30 * time.Second}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PETREL_ADMIN_URL":
			f.cfg.URL = v
		case "PETREL_ADMIN_USER":
			f.cfg.User = v
		case "PETREL_ADMIN_PASSWORD":
			f.cfg.Password = v
		case "PETREL_ADMIN_TOKEN":
			f.cfg.Token = v
		}
	}
	fs := flag.NewFlagSet("petrel ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	run, ok := ctlCommands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "petrel ctl: unknown command %q\n\n%s", cmd, ctlUsage)
		return 2
	}
	sub := flag.NewFlagSet("petrel ctl "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	f.register(sub)
	do, nargs := run(sub)
	if err := sub.Parse(rest); err != nil {
		return 2
	}
	if sub.NArg() != nargs {
		fmt.Fprintf(stderr, "petrel ctl %s: want %d argument(s), got %d\n", cmd, nargs, sub.NArg())
		return 2
	}
	f.cfg.Timeout = f.timeout
	c, err := ctl.New(f.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "petrel ctl: %v\n", err)
		return 2
	}
	defer c.Close()
	err = do(context.Background(), c, f, ctl.Output{W: stdout, JSON: f.json}, sub.Args())
	var usage ctlUsageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "petrel ctl %s: %v\n", cmd, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "petrel ctl %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// ctlUsageError is a bad flag value found after parsing.
type ctlUsageError struct{ error }

// ctlCommand registers a command's own flags on fs and returns the
// command and the number of arguments it takes.
type ctlCommand func(fs *flag.FlagSet) (do func(context.Context, *ctl.Client, *ctlFlags, ctl.Output, []string) error, nargs int)

type ctlDo = func(context.Context, *ctl.Client, *ctlFlags, ctl.Output, []string) error

var ctlCommands = map[string]ctlCommand{
	"clients":  sessionsCommand(true),
	"sessions": sessionsCommand(false),
	"client":   sessionCommand(true),
	"session":  sessionCommand(false),
	"kick": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, f *ctlFlags, o ctl.Output, args []string) error {
			if err := c.Kick(ctx, f.tenant, args[0]); err != nil {
				return err
			}
			return o.Done("kicked")
		}, 1
	},
	"delete-session": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, f *ctlFlags, o ctl.Output, args []string) error {
			if err := c.DeleteSession(ctx, f.tenant, args[0]); err != nil {
				return err
			}
			return o.Done("deleted")
		}, 1
	},
	"subscriptions": func(fs *flag.FlagSet) (ctlDo, int) {
		var sf ctl.SubscriptionFilter
		fs.StringVar(&sf.ClientID, "client-id", "", "one client's subscriptions")
		fs.StringVar(&sf.Filter, "filter", "", "subscriptions to exactly this filter")
		fs.StringVar(&sf.Topic, "topic", "", "subscriptions matching this topic name")
		limit := fs.Int("limit", 0, "at most this many (0: all)")
		return func(ctx context.Context, c *ctl.Client, f *ctlFlags, o ctl.Output, _ []string) error {
			sf.Tenant = f.tenant
			subs, err := c.Subscriptions(ctx, sf, *limit)
			if err != nil {
				return err
			}
			return o.Subscriptions(subs)
		}, 0
	},
	"retained": func(fs *flag.FlagSet) (ctlDo, int) {
		filter := fs.String("filter", "", "topic filter (default: all you may see)")
		limit := fs.Int("limit", 0, "at most this many (0: all)")
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, _ []string) error {
			rs, err := c.Retained(ctx, *filter, *limit)
			if err != nil {
				return err
			}
			return o.Retained(rs)
		}, 0
	},
	"retained-get": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, args []string) error {
			r, err := c.RetainedMessage(ctx, args[0])
			if err != nil {
				return err
			}
			return o.RetainedMessage(r)
		}, 1
	},
	"retained-delete": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, args []string) error {
			if err := c.DeleteRetained(ctx, args[0]); err != nil {
				return err
			}
			return o.Done("deleted")
		}, 1
	},
	"publish": publishCommand,
	"stats": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, _ []string) error {
			s, err := c.Stats(ctx)
			if err != nil {
				return err
			}
			return o.Stats(s)
		}, 0
	},
	"cluster": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, _ []string) error {
			cl, err := c.Cluster(ctx)
			if err != nil {
				return err
			}
			return o.Cluster(cl)
		}, 0
	},
	"reload": func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, _ []string) error {
			if err := c.Reload(ctx); err != nil {
				return err
			}
			return o.Done("reloaded")
		}, 0
	},
}

func sessionsCommand(online bool) ctlCommand {
	return func(fs *flag.FlagSet) (ctlDo, int) {
		prefix := fs.String("client-id", "", "client ids starting with this")
		limit := fs.Int("limit", 0, "at most this many (0: all)")
		return func(ctx context.Context, c *ctl.Client, f *ctlFlags, o ctl.Output, _ []string) error {
			ss, err := c.Sessions(ctx, online, f.tenant, *prefix, *limit)
			if err != nil {
				return err
			}
			return o.Sessions(ss)
		}, 0
	}
}

func sessionCommand(online bool) ctlCommand {
	return func(*flag.FlagSet) (ctlDo, int) {
		return func(ctx context.Context, c *ctl.Client, f *ctlFlags, o ctl.Output, args []string) error {
			s, err := c.Session(ctx, online, f.tenant, args[0])
			if err != nil {
				return err
			}
			return o.Session(s)
		}, 1
	}
}

func publishCommand(fs *flag.FlagSet) (ctlDo, int) {
	var req api.PublishRequest
	fs.StringVar(&req.Topic, "t", "", "topic")
	fs.StringVar(&req.Payload, "m", "", "message")
	fs.IntVar(&req.QoS, "q", 0, "QoS: 0, 1 or 2")
	fs.BoolVar(&req.Retain, "r", false, "retain")
	b64 := fs.Bool("base64", false, "the message is base64 (binary payloads)")
	fs.StringVar(&req.ContentType, "content-type", "", "5.0 content type")
	fs.StringVar(&req.ResponseTopic, "response-topic", "", "5.0 response topic")
	expiry := fs.Uint("expiry", 0, "5.0 message expiry interval in seconds")
	fs.Func("user-property", "5.0 user property KEY=VALUE (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("%q: want KEY=VALUE", s)
		}
		req.UserProperties = append(req.UserProperties, api.UserProperty{Key: k, Value: v})
		return nil
	})
	return func(ctx context.Context, c *ctl.Client, _ *ctlFlags, o ctl.Output, _ []string) error {
		if req.Topic == "" {
			return ctlUsageError{errors.New("-t TOPIC is required")}
		}
		if *b64 {
			req.PayloadEncoding = api.EncodingBase64
		}
		if *expiry > 1<<32-1 {
			return ctlUsageError{fmt.Errorf("--expiry %d: at most %d", *expiry, uint32(1<<32-1))}
		}
		req.MessageExpiryInterval = uint32(*expiry)
		r, err := c.Publish(ctx, req)
		if err != nil {
			return err
		}
		return o.Published(r)
	}, 0
}
