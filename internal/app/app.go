// Package app is the composition root: it opens the store named by the
// config, compiles the plan against the built-in connectors, wires ingest,
// engine and executor, and owns the order of start-up and shutdown.
package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/alert"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/leader"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/poll"
	"github.com/switchboard-dev/switchboard/internal/retention"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/postgres"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/tracing"
)

// Registry returns the registry of every built-in connector kind.
func Registry() *connector.Registry { return all.Registry() }

// Compile checks a parsed config against the built-in connectors.
func Compile(c *config.Config) (*flow.Plan, error) { return flow.Compile(c, Registry()) }

// OpenStore opens the store a plan names. SQLite is always migrated (one
// process owns the file); PostgreSQL is migrated only when migrate is true,
// and otherwise refuses a schema that is behind.
func OpenStore(ctx context.Context, p *flow.Plan, migrate bool) (store.Store, error) {
	if p.StorePath != "" {
		return sqlite.Open(ctx, p.StorePath)
	}
	return postgres.Open(ctx, p.PostgresDSN.Reveal(), postgres.Options{
		Migrate: migrate,
		// Workers never hold a connection while a step runs: the store is
		// used by the ingest committer, the claim loop, the finisher, the
		// lease renewer, the LISTEN connection, retention and operator
		// reads. A small pool keeps many nodes within max_connections.
		MaxConns: 12,
	})
}

// errLocked is lockFile's answer when another process holds the lock.
var errLocked = errors.New("lock held by another process")

// NodeID names this process in leases and logs: host, pid and a random
// suffix, so a restarted process is a new node.
func NodeID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Options configure a Server beyond what the config says.
type Options struct {
	Logger *slog.Logger
	// Notifier is told about dead runs (besides the error log line).
	Notifier delivery.Notifier
	// Observe is called after every attempt (the demo prints them).
	Observe func(delivery.Report)
	// ShutdownGrace bounds how long shutdown waits for in-flight requests
	// and runs. Default 10s.
	ShutdownGrace time.Duration
	// PollInterval overrides the executor's idle poll (tests).
	PollInterval time.Duration
	// NoMigrate makes a PostgreSQL node refuse to start on a schema that is
	// behind instead of migrating it (`serve --no-migrate`).
	NoMigrate bool
	// Node identifies this process; default NodeID().
	Node string
	// NoExecutor runs ingest only: events and runs are stored, nothing is
	// executed (the benchmark's ingest phase).
	NoExecutor bool
	// MetricsEvery is how often the queue gauges are sampled from the
	// store. Default metrics.DefaultSampleEvery (5s).
	MetricsEvery time.Duration
	// Tracer, when set, makes the node's spans instead of the exporter the
	// config's tracing: section describes (tests hand in a recorder).
	Tracer *tracing.Tracer
}

// Server is one node: ingest, engine and executor over one store.
type Server struct {
	Plan     *flow.Plan
	Store    store.Store
	Engine   *engine.Engine
	Executor *delivery.Executor
	// Poller runs the timed sources (poll, schedule).
	Poller   *poll.Poller
	opts     Options
	unlock   func()
	draining atomic.Bool
	ready    *readiness
	handler  http.Handler
	registry *prometheus.Registry
	sampler  *metrics.Sampler
	alerts   *alert.Manager
	tracer   *tracing.Tracer // nil when tracing is off
	// listener is the PostgreSQL store's LISTEN loop (nil on SQLite).
	listener func(ctx context.Context, wake func(), onError func(error)) error
}

// NewServer opens the plan's store and wires a node. A SQLite store is
// locked for this process: two nodes on one SQLite file would each think
// the other's leases were theirs to release.
func NewServer(ctx context.Context, p *flow.Plan, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = cmp.Or(p.ShutdownGrace, 10*time.Second)
	}
	if opts.Node == "" {
		opts.Node = NodeID()
	}
	unlock := func() {}
	if p.StorePath != "" {
		var err error
		unlock, err = lockFile(lockPath(p.StorePath))
		switch {
		case errors.Is(err, errLocked):
			return nil, fmt.Errorf("store %s is in use by another switchboard process (SQLite serves one node; use PostgreSQL for several)", p.StorePath)
		case err != nil:
			// A missing or unwritable directory: the store could not be
			// opened either, and no other process is to blame.
			return nil, fmt.Errorf("store %s: lock file: %w", p.StorePath, err)
		}
	}
	st, err := OpenStore(ctx, p, !opts.NoMigrate)
	if err != nil {
		unlock()
		return nil, err
	}
	if p.StorePath != "" && locks {
		// No other process can hold leases on this file: runs a crashed
		// predecessor left running are claimable now, not a lease later.
		n, err := st.ReleaseLeases(ctx, time.Now())
		if err != nil {
			st.Close()
			unlock()
			return nil, err
		}
		if n > 0 {
			opts.Logger.Info("resuming runs left running by a previous process", "runs", n)
		}
	}
	// Each server has its own registry: tests run many in one process, and
	// the global default would mix (or refuse) their collectors.
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	s := &Server{Plan: p, Store: st, opts: opts, unlock: unlock, registry: reg}
	// Every node samples the shared store, so each exports the same gauges.
	s.sampler = metrics.NewSampler(m, st, slices.Sorted(maps.Keys(p.Flows)), opts.MetricsEvery, nil)
	s.sampler.Logger = opts.Logger
	// SQLite has one writer: commits run one at a time. On PostgreSQL the
	// executor keeps two cycles in flight, which hides a round trip; the
	// ingress keeps one group commit, which then holds more events:
	// concurrent inserts into the same tables cost the server more than
	// they save (bench, 2026-11-29: ingest 23–29% of the baseline with one,
	// 17–19% with four; end to end the most deliveries with one and two).
	ingestParallel, execParallel := 1, 1
	if pg, ok := st.(*postgres.Store); ok {
		s.listener = pg.Listen
		execParallel = 2
	}
	s.alerts, err = alert.New(alert.Config{Alerts: p.Alerts, Stats: st, Logger: opts.Logger})
	if err != nil {
		st.Close()
		unlock()
		return nil, err
	}
	s.tracer = opts.Tracer
	if s.tracer == nil && p.Tracing != nil {
		s.tracer, err = newTracer(ctx, p.Tracing, opts.Node, opts.Logger)
		if err != nil {
			st.Close()
			unlock()
			return nil, err
		}
	}
	// Steps and polls of one system draw on the same limits.
	gates := delivery.NewGates(p, nil)
	s.Executor = delivery.New(delivery.Config{
		Store: st, Plan: p, Workers: p.Workers, Lease: p.Lease,
		Notifier: deadLetters{alerts: s.alerts, next: opts.Notifier},
		Observe:  s.observe, Logger: opts.Logger, PollInterval: opts.PollInterval, Grace: opts.ShutdownGrace,
		CommitParallel: execParallel, Metrics: m, Gates: gates, Tracer: s.tracer,
	})
	s.Engine = engine.New(engine.Config{
		Store: st, Plan: p, Notify: s.Executor.Notify, Logger: opts.Logger, CommitParallel: ingestParallel, Metrics: m,
		Fingerprints: st,
	})
	s.Poller = poll.New(poll.Config{
		Plan: p, Store: st, Engine: s.Engine, Gates: gates, ResumedFunc: s.Executor.LiftPause,
		Metrics: m, Logger: opts.Logger, Node: opts.Node, Lease: p.Lease,
	})
	m.WatchCommitQueue("engine", s.Engine.Pending)
	m.WatchCommitQueue("finisher", s.Executor.Pending)
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", ingest.New(ingest.Config{
		Plan: p, Engine: s.Engine, Logger: opts.Logger, Draining: s.draining.Load, Metrics: m, Tracer: s.tracer,
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.ready = &readiness{probe: st.Ping, log: opts.Logger}
	mux.HandleFunc("GET /readyz", s.serveReady)
	s.handler = mux
	return s, nil
}

// Handler returns the node's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the node's Prometheus registry, served at GET /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Close flushes queued spans, releases the store and its lock without
// serving (Serve does all three itself when it returns).
func (s *Server) Close() error {
	defer s.unlock()
	s.ready.close()
	// Bounded: a collector that is down must not hold up the exit; its
	// spans are lost, and the exporter logs why.
	ctx, cancel := context.WithTimeout(context.Background(), tracerFlush)
	defer cancel()
	return errors.Join(s.tracer.Shutdown(ctx), s.Store.Close())
}

// tracerFlush bounds how long Close waits for queued spans to be exported.
const tracerFlush = 5 * time.Second

// newTracer builds the exporter a tracing: section describes.
func newTracer(ctx context.Context, t *config.Tracing, node string, logger *slog.Logger) (*tracing.Tracer, error) {
	c := tracing.Config{Endpoint: t.OTLPEndpoint, SampleRatio: 1, ServiceName: t.ServiceName, Node: node, Logger: logger}
	if t.SampleRatio != nil {
		c.SampleRatio = *t.SampleRatio
	}
	if len(t.Headers) > 0 {
		c.Headers = make(map[string]string, len(t.Headers))
		for k, v := range t.Headers {
			c.Headers[k] = v.Reveal()
		}
	}
	return tracing.New(ctx, c)
}

// Serve runs the node on ln until ctx ends, then shuts down in order: stop
// accepting webhooks (503), finish in-flight requests, commit queued events,
// let in-flight runs finish their step, close the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) (err error) {
	defer func() { err = errors.Join(err, s.Close()) }()
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	execCtx, stopExec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	defer stopExec()
	var g errgroup.Group
	engineDone := make(chan struct{})
	g.Go(func() error { defer close(engineDone); return s.Engine.Run(engineCtx) })
	// Before anything calls a system: the gates start unpaused, and an
	// operator's pause (or a refusal another node saw) must hold from the
	// first call. A node without an executor still polls through the
	// gates, so it keeps them in step itself.
	syncCtx, cancelSync := context.WithTimeout(ctx, store.CommitTimeout)
	if err := s.Executor.SyncPauses(syncCtx); err != nil {
		s.opts.Logger.Warn("read paused systems at start; they are read again within seconds", "error", err)
	}
	cancelSync()
	if !s.opts.NoExecutor {
		g.Go(func() error { return s.Executor.Run(execCtx) })
	} else {
		g.Go(func() error { s.Executor.WatchPauses(execCtx); return nil })
	}
	if s.listener != nil && !s.opts.NoExecutor {
		g.Go(func() error {
			return s.listener(execCtx, s.Executor.Notify, func(err error) {
				s.opts.Logger.Warn("LISTEN connection failed; reconnecting (idle workers poll meanwhile)", "error", err)
			})
		})
	}
	elector := leader.New(leader.Config{Store: s.Store, Node: s.opts.Node, TTL: s.Plan.Lease, Logger: s.opts.Logger,
		Exclusive: s.Plan.StorePath != "" && locks}) // the lock file makes this node SQLite's only one
	sweeper := retention.New(retention.Config{Store: s.Store, Keep: s.Plan.Retention, Logger: s.opts.Logger})
	g.Go(func() error { return elector.Run(execCtx, leader.Duty{Name: "retention", Run: sweeper.Run}) })
	pruner := retention.NewFingerprints(s.Store, s.Plan.Ownership.EchoWindow, retention.Config{Logger: s.opts.Logger})
	g.Go(func() error { return elector.Run(execCtx, leader.Duty{Name: "fingerprints", Run: pruner.Run}) })
	g.Go(func() error { return s.sampler.Run(execCtx) })
	// Dead-letter alerts go out from every node the moment a run dies; the
	// other rules are evaluated by one node at a time.
	// Notifications outlive the executor: runs that die during the
	// shutdown grace are still announced.
	alertsCtx, stopAlerts := context.WithCancel(context.WithoutCancel(ctx))
	alertsDone := make(chan error, 1)
	go func() { alertsDone <- s.alerts.Deliver(alertsCtx) }()
	g.Go(func() error {
		return elector.Run(execCtx, leader.Duty{Name: "alerts", Run: func(ctx context.Context) { _ = s.alerts.Run(ctx) }})
	})

	// Timed sources stop first on shutdown: a tick goes through the
	// engine, which must still be committing.
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPoll()
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); _ = s.Poller.Run(pollCtx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	s.draining.Store(true)
	s.opts.Logger.Info("shutting down: no new webhooks; finishing in-flight work", "grace", s.opts.ShutdownGrace)
	stopPoll()
	<-pollDone
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownGrace)
	defer cancel()
	if e := srv.Shutdown(shCtx); e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", e))
	}
	stopEngine()
	<-engineDone
	stopExec()
	err = errors.Join(err, g.Wait())
	// The senders flush what is queued (bounded) before they return.
	stopAlerts()
	return errors.Join(err, <-alertsDone)
}

// observe feeds finished runs' lag to the alert rules, then the caller's
// observer.
func (s *Server) observe(r delivery.Report) {
	if r.Done {
		s.alerts.ObserveLag(r.Flow, r.Lag)
	}
	if s.opts.Observe != nil {
		s.opts.Observe(r)
	}
}

// deadLetters hands every dead run to the alert manager (which never
// blocks) and to the caller's notifier.
type deadLetters struct {
	alerts *alert.Manager
	next   delivery.Notifier
}

// SystemPaused raises the alert of a system that refused our credentials.
func (d deadLetters) SystemPaused(system, reason string) { d.alerts.SystemPaused(system, reason) }

// SystemResumed resolves it.
func (d deadLetters) SystemResumed(system string) { d.alerts.SystemResumed(system) }

func (d deadLetters) RunDead(ctx context.Context, r delivery.DeadRun) {
	d.alerts.RunDead(ctx, alert.DeadLetter(r)) // the same fields, declared apart so alert stays a leaf
	if d.next != nil {
		d.next.RunDead(ctx, r)
	}
}

// lockPath is the lock file of the SQLite store at path: beside the file
// its path leads to, through symbolic links, so that two processes that
// reach one database by different names still take the same lock. (A
// store not created yet has no link to follow.) A hard link is another
// name with no link to follow, and so another lock: the store refuses a
// database file with more than one name instead (see sqlite.Open).
func lockPath(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	} else if target, err := os.Readlink(path); err == nil {
		// A link to a database not created yet: the lock goes where the
		// database will be.
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return path + ".lock"
}
