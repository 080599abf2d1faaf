package main

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/petrel-mqtt/petrel/broker"
	"github.com/petrel-mqtt/petrel/internal/auditlog"
	"github.com/petrel-mqtt/petrel/internal/config"
	"github.com/petrel-mqtt/petrel/internal/listener"
)

// Audit events of a reload (broker.AuditKey).
const (
	auditReload        = "reload"
	auditReloadRefused = "reload.refused"
)

// reloader is what SIGHUP changes in a running petrel serve.
type reloader struct {
	path      string
	environ   []string
	overrides func(*config.Config)
	b         *broker.Broker
	lns       []*listener.Listener
	level     *slog.LevelVar
	sec       *security
	audit     *auditlog.File // nil without log.audit_file
	adm       *adminListener // nil without the admin listener
	log       *slog.Logger
}

// reload re-reads the configuration on SIGHUP or the admin API's request
// (why says which) and reports one outcome, also as its error.
// The audit file is reopened first, whatever follows (log rotation). The
// file is then checked as petrel check would (users file, keys and
// certificates loaded); if anything is wrong, nothing changes and one
// ERROR line says so. Otherwise the limits apply (limits.*: new
// connections and sessions get them; each change is logged with its old
// and new value), the users, roles and keys are swapped, the certificates
// reloaded and the log level set, and one line ends the reload, listing
// the settings that need a restart.
func (r *reloader) reload(why string, old *config.Config) (*config.Config, error) {
	r.log.Info(why+": reloading configuration", "file", r.path)
	if r.audit != nil {
		if err := r.audit.Reopen(); err != nil {
			r.log.Error("audit file not reopened; writing to the old one", "file", r.audit.Path(), "err", err)
		}
	}
	refuse := func(err error) (*config.Config, error) {
		r.log.Error("reload refused; keeping the running configuration, users, roles and keys", broker.AuditKey, auditReloadRefused,
			"file", r.path, "err", err)
		return old, err
	}
	next, err := loadConfig(r.path, r.environ)
	if err == nil {
		r.overrides(next)
		err = errors.Join(next.Validate(), next.Check())
	}
	if err != nil {
		return refuse(err)
	}
	if err := r.b.SetLimits(next.BrokerOptions()); err != nil {
		return refuse(err)
	}
	restart, err := r.sec.reload(next, r.b)
	if err != nil {
		if lerr := r.b.SetLimits(old.BrokerOptions()); lerr != nil { // accepted before: cannot fail
			r.log.Error("restoring the limits", "err", lerr)
		}
		return refuse(err)
	}
	var failed []string
	for _, ln := range r.lns {
		if t := ln.Config().Type; t == "tls" || t == "wss" {
			if err := ln.ReloadCertificates(); err != nil {
				failed = append(failed, ln.Name())
				r.log.Error("certificate reload failed; keeping the old certificate", "listener", ln.Name(), "err", err)
			}
		}
	}
	r.adm.reloadCertificates()
	for _, w := range next.Warnings {
		r.log.Warn("configuration: " + w)
	}
	if next.Log.Level != old.Log.Level {
		if err := r.level.UnmarshalText([]byte(next.Log.Level)); err == nil {
			r.log.Info("log level changed", "from", old.Log.Level, "to", next.Log.Level)
		}
	}
	var changed []string
	for _, c := range changedKeys(old, next) {
		switch {
		case c.key == "log.level":
			changed = append(changed, c.key)
		case c.key == "auth": // applied by security.reload; what it cannot apply is in restart
			changed = append(changed, c.key)
		case strings.HasPrefix(c.key, "limits."):
			changed = append(changed, c.key)
			r.log.Info("limit changed", "key", c.key, "from", c.from, "to", c.to)
		default:
			restart = append(restart, c.key)
		}
	}
	for _, k := range restart {
		r.log.Warn("setting changed; it takes effect after a restart", "key", k)
	}
	if len(failed) > 0 {
		r.log.Warn("configuration reloaded, but not the certificates of some listeners", broker.AuditKey, auditReload,
			"file", r.path, "changed", changed, "restart_needed", restart, "certificates_failed", failed)
		return next, nil
	}
	r.log.Info("configuration reloaded", broker.AuditKey, auditReload, "file", r.path, "changed", changed,
		"restart_needed", restart)
	return next, nil
}

// change is one setting that differs between two configurations.
type change struct {
	key      string // yaml key path
	from, to string
}

// changedKeys lists the yaml key paths whose values differ, with both
// values.
func changedKeys(a, b *config.Config) []change {
	var out []change
	var walk func(x, y reflect.Value, path string)
	walk = func(x, y reflect.Value, path string) {
		if x.Kind() == reflect.Struct {
			for i := 0; i < x.NumField(); i++ {
				name := strings.Split(x.Type().Field(i).Tag.Get("yaml"), ",")[0]
				if name == "" || name == "-" {
					continue
				}
				p := name
				if path != "" {
					p = path + "." + name
				}
				walk(x.Field(i), y.Field(i), p)
			}
			return
		}
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			out = append(out, change{key: path, from: show(x), to: show(y)})
		}
	}
	walk(reflect.ValueOf(*a), reflect.ValueOf(*b), "")
	return out
}

// show formats a setting's value for the log (a pointer's target).
func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "none"
		}
		v = v.Elem()
	}
	return fmt.Sprint(v.Interface())
}
