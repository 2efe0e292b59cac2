// SPDX-License-Identifier: Apache-2.0

// Command storkeepd is the storkeep daemon: it owns org.storkeep.StorKeep1
// on the bus and keeps the storage connections it is told to manage alive.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/storkeep/storkeep/backends/ioprobe"
	"github.com/storkeep/storkeep/backends/iscsi"
	"github.com/storkeep/storkeep/backends/nfs"
	skdbus "github.com/storkeep/storkeep/dbus"
	"github.com/storkeep/storkeep/logging"
	"github.com/storkeep/storkeep/netmon"
	"github.com/storkeep/storkeep/policy"
	"github.com/storkeep/storkeep/ratelog"
	"github.com/storkeep/storkeep/service"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0~dev"

const defaultConfig = "/etc/storkeep/storkeep.toml"

// fakeBackends, set only in a benchmark build (benchfake.go), replaces
// the host's backends.
var fakeBackends func() map[service.Kind]service.Backend

func main() {
	if len(os.Args) > 1 && os.Args[1] == ioprobe.HelperArg {
		// A read through a connection, for the daemon (backends/ioprobe).
		os.Exit(ioprobe.Main(os.Args[2:]))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "storkeepd:", err)
		os.Exit(1)
	}
}

type flags struct {
	bus        string
	stateDir   string
	runtimeDir string
	config     string
	configSet  bool
	version    bool
	auth       string
	// checkConfig: load the configuration (the file after the flags, or
	// --config's), print why it does not load, and exit.
	checkConfig bool
	checkFile   string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("storkeepd", flag.ContinueOnError)
	fs.StringVar(&f.bus, "bus", "system", "bus to serve on: system, session, or a D-Bus address (unix:path=...)")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/storkeep", "where the managed CIDs are kept (root only)")
	fs.StringVar(&f.runtimeDir, "runtime-dir", "/run/storkeep", "where mount points live")
	fs.StringVar(&f.config, "config", defaultConfig, "TOML configuration file")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.auth, "authorization", authAuto, "who may change things: polkit, root (and the daemon's own uid), or auto (polkit on the system bus, root elsewhere)")
	fs.BoolVar(&f.checkConfig, "check-config", false, "check the configuration file given after the flags (default: --config's) and exit: 0 if the daemon would load it, else 1 and why, with line and column")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if err := checkAuthorizationFlag(f.auth); err != nil {
		return f, err
	}
	rest := fs.Args()
	if f.checkConfig && len(rest) == 1 {
		f.checkFile, rest = rest[0], nil
	}
	if len(rest) > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", rest)
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "config" {
			f.configSet = true
		}
	})
	return f, nil
}

func run() error {
	// Before anything else: SIGHUP's default action would end the process
	// (and systemd counts that as a clean exit). One that comes before the
	// daemon serves waits here and reloads then.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if os.Getenv("GOGC") == "" {
		// The live heap is small (about 8 MB with 10,000 CIDs) and big
		// replies make short-lived garbage: half the default headroom keeps
		// the resident size under 40 MB for a little more GC work.
		debug.SetGCPercent(50)
	}
	f, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if f.version {
		fmt.Println(version)
		return nil
	}
	if f.checkConfig {
		// Like sshd -t: nothing on success, the reason otherwise; the
		// same words a failed reload logs.
		if f.checkFile != "" {
			_, err = service.LoadConfig(f.checkFile, false)
		} else {
			_, err = service.LoadConfig(f.config, !f.configSet)
		}
		return err
	}
	cfg, err := service.LoadConfig(f.config, !f.configSet)
	if err != nil {
		return err
	}
	// The state directory is this process's before anything is loaded,
	// fixed or observed: a second instance stops here, having changed
	// nothing and asked the bus for nothing.
	lock, err := service.LockStateDir(f.stateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg.Daemon.LogLevel))
	// Under systemd, stderr is the journal: native entries, with fields
	// (journalctl -p warning -u storkeepd, journalctl CID=vm1-disk).
	log := slog.New(logging.New(os.Stderr, logging.Options{Level: level,
		Journal: logging.StderrIsJournal(), Identifier: "storkeepd"}))

	store, fixed, err := service.OpenStore(f.stateDir)
	if err != nil {
		return err
	}
	for _, msg := range fixed {
		log.Warn("state directory was not private; tightened", "what", msg)
	}
	if err := os.MkdirAll(f.runtimeDir, 0o755); err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}

	// One cache of host name answers: the path monitor refreshes the
	// names it watches, the iSCSI backend matches sessions with them.
	resolver := &netmon.Resolver{}
	var paths service.PathWatcher
	if cfg.Reconnect.FollowLinks() {
		paths = newNetPaths(log.With("component", "netmon"), resolver)
	} else {
		log.Info("link events are off (reconnect.link_events = false): only the backoff decides when to retry")
	}
	// One set of kept read helpers for both kinds: about as many as
	// reads may be in flight.
	probes := &ioprobe.Runner{Keep: cfg.Health.Policy().MaxConcurrent}
	defer probes.Close()
	backends := map[service.Kind]service.Backend{
		service.KindNFS: &nfs.Backend{RuntimeDir: f.runtimeDir, IOProbe: probes,
			Log: log.With("component", "nfs")},
		service.KindISCSI: &iscsi.Backend{Log: log.With("component", "iscsi"), Resolver: resolver, IOProbe: probes},
	}
	if fakeBackends != nil {
		log.Warn("benchmark build: connections are made in memory, not on the host")
		backends = fakeBackends()
	}
	// Loading the state only adds to the heap: with 100,000 CIDs a
	// collection every 50% of growth was a seventh of the start's CPU.
	// Collect less often until it is loaded.
	gcPercent := debug.SetGCPercent(400)
	svc, err := service.New(service.Options{
		Store:     store,
		Logger:    log.With("component", "service"),
		MaxCIDs:   cfg.Limits.MaxCIDs,
		Reconnect: reconnectPolicy(cfg.Reconnect),
		Health:    cfg.Health.Policy(),
		Paths:     paths,
		Backends:  backends,
	})
	debug.SetGCPercent(gcPercent)
	if err != nil {
		return err
	}

	conn, err := skdbus.Connect(f.bus)
	if err != nil {
		return err
	}
	defer conn.Close()

	// One limit per caller for every line about a refused call, whoever
	// writes it (the bus layer, the authorizer).
	refused := ratelog.New(log.With("component", "ratelog"), ratelog.Options{})
	callers := policy.NewCallerCache()
	srv, err := skdbus.NewServer(conn, skdbus.Options{
		Service: svc,
		Authorizer: newAuthorizer(f.auth, f.bus, conn, callers, refused,
			log.With("component", "policy")),
		Logger:  log.With("component", "dbus"),
		Version: version,
		Refused: refused,
		CallerUID: func(ctx context.Context, sender string) (uint32, error) {
			c, err := callers.Lookup(ctx, conn.Conn, sender)
			return c.UID, err
		},
		Limits: busLimits(cfg.Limits),
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	r := &reloader{path: f.config, optional: !f.configSet, inUse: cfg, level: level,
		svc: svc, srv: srv, probes: probes, log: log}
	go r.loop(ctx, hup)

	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	usr1, stopUSR1 := notifyStats()
	defer stopUSR1()
	statsDone := make(chan struct{})
	go func() { logStats(ctx, log, usr1, srv.Waits); close(statsDone) }()
	refusedDone := make(chan struct{})
	go func() { refused.Run(ctx); close(refusedDone) }()
	notifyDone := make(chan struct{})
	go func() { newNotifier(svc, srv, log).run(ctx); close(notifyDone) }()
	serveErr := srv.Serve(ctx)
	_ = sdNotify("STOPPING=1")
	cancel()
	<-done
	<-statsDone
	<-refusedDone
	<-notifyDone
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped; connections are left as they are")
	return nil
}
