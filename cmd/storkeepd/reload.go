// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/storkeep/storkeep/backends/ioprobe"
	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/service"
)

// reloader applies the configuration file again on SIGHUP (systemctl
// reload). What can change in a running daemon changes at once: the log
// level, the reconnect backoff, and every [limits] key. What cannot is
// reconnect.link_events: netmon is started, or not, with the daemon.
// A file that does not load changes nothing.
type reloader struct {
	path     string
	optional bool // the default path: a missing file means the defaults
	// inUse is the configuration in effect: the file's last good
	// version, with link_events as the daemon started.
	inUse service.Config
	level *slog.LevelVar
	svc   *service.Service
	srv   *skdbus.Server
	// probes keeps the read helpers; nil in tests that read nothing.
	probes *ioprobe.Runner
	log    *slog.Logger
}

// loop reloads on each signal from hup until ctx is done. Signals that
// come while a reload runs coalesce into one more.
func (r *reloader) loop(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload()
		}
	}
}

func (r *reloader) reload() {
	// State files that did not load are read again whatever the
	// configuration says: fixing one and reloading is how an admin lifts
	// its hold at once.
	r.svc.Recheck()
	cfg, err := service.LoadConfig(r.path, r.optional)
	if err != nil {
		r.log.Error("configuration not reloaded; keeping the one in use", "err", err)
		return
	}
	if cfg.Reconnect.FollowLinks() != r.inUse.Reconnect.FollowLinks() {
		r.log.Warn("reconnect.link_events cannot change while the daemon runs; it takes effect at the next start (systemctl restart storkeepd, which leaves every connection as it is)",
			"config", r.path, "in_use", r.inUse.Reconnect.FollowLinks(), "in_file", cfg.Reconnect.FollowLinks())
	}
	cfg.Reconnect.LinkEvents = r.inUse.Reconnect.LinkEvents
	changed := r.inUse.Changed(cfg)

	r.svc.SetReconnectPolicy(reconnectPolicy(cfg.Reconnect))
	r.svc.SetMaxCIDs(cfg.Limits.MaxCIDs)
	r.svc.SetHealthPolicy(cfg.Health.Policy())
	if r.probes != nil {
		r.probes.SetKeep(cfg.Health.Policy().MaxConcurrent)
	}
	r.srv.SetLimits(busLimits(cfg.Limits))
	// Say so at the more verbose of the two levels, so that the line is
	// seen whichever way the level moves.
	newLevel := logLevel(cfg.Daemon.LogLevel)
	if newLevel < r.level.Level() {
		r.level.Set(newLevel)
	}
	what := strings.Join(changed, " ")
	if what == "" {
		what = "nothing"
	}
	r.log.Info("configuration reloaded", "config", r.path, "changed", what)
	r.level.Set(newLevel)
	r.inUse = cfg
}

// logLevel maps daemon.log_level to a slog level ("" is info).
func logLevel(level string) slog.Level {
	switch level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// reconnectPolicy is the service's retry policy from [reconnect].
func reconnectPolicy(c service.ReconnectConfig) service.ReconnectPolicy {
	return service.ReconnectPolicy{
		Initial: time.Duration(c.InitialBackoff),
		Max:     time.Duration(c.MaxBackoff),
	}
}

// busLimits is the bus server's request limits from [limits].
func busLimits(l service.LimitsConfig) skdbus.Limits {
	return skdbus.Limits{
		MaxOptions:      l.MaxOptions,
		MaxCIDLength:    l.MaxCIDLength,
		MaxURILength:    l.MaxURILength,
		MaxOptionLength: l.MaxOptionLength,

		MaxWaitsPerCaller: l.MaxWaitsPerCaller,
		MaxMessageSize:    l.MaxMessageSize,
	}
}
