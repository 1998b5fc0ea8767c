// Package app is the composition root: it opens the store named by the
// config, compiles the plan against the built-in connectors, wires ingest,
// engine and executor, and owns the order of start-up and shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/ingest"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// Registry returns the registry of every built-in connector kind.
func Registry() *connector.Registry { return all.Registry() }

// Compile checks a parsed config against the built-in connectors.
func Compile(c *config.Config) (*flow.Plan, error) { return flow.Compile(c, Registry()) }

// OpenStore opens the store a plan names.
func OpenStore(ctx context.Context, p *flow.Plan) (store.Store, error) {
	if p.StorePath == "" {
		return nil, fmt.Errorf("unsupported store %q", p.Store)
	}
	return sqlite.Open(ctx, p.StorePath)
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
}

// Server is one node: ingest, engine and executor over one store.
type Server struct {
	Plan     *flow.Plan
	Store    store.Store
	Engine   *engine.Engine
	Executor *delivery.Executor
	opts     Options
	unlock   func()
	draining atomic.Bool
	handler  http.Handler
}

// NewServer opens the plan's store and wires a node. The SQLite store is
// locked for this process: two nodes on one SQLite file would each think
// the other's leases were theirs to release.
func NewServer(ctx context.Context, p *flow.Plan, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	unlock, err := lockFile(p.StorePath + ".lock")
	if err != nil {
		return nil, fmt.Errorf("store %s is in use by another switchboard process: %w", p.StorePath, err)
	}
	st, err := OpenStore(ctx, p)
	if err != nil {
		unlock()
		return nil, err
	}
	// No other process can hold leases on this file: runs a crashed
	// predecessor left running are claimable now, not a lease period later.
	if n, err := st.ReleaseLeases(ctx, time.Now()); err != nil {
		st.Close()
		unlock()
		return nil, err
	} else if n > 0 {
		opts.Logger.Info("resuming runs left running by a previous process", "runs", n)
	}
	s := &Server{Plan: p, Store: st, opts: opts, unlock: unlock}
	s.Executor = delivery.New(delivery.Config{
		Store: st, Plan: p, Workers: p.Workers, Lease: p.Lease, Notifier: logNotifier{opts.Logger, opts.Notifier},
		Observe: opts.Observe, Logger: opts.Logger, PollInterval: opts.PollInterval,
	})
	s.Engine = engine.New(engine.Config{Store: st, Plan: p, Notify: s.Executor.Notify, Logger: opts.Logger})
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", ingest.New(ingest.Config{
		Plan: p, Engine: s.Engine, Logger: opts.Logger, Draining: s.draining.Load,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	s.handler = mux
	return s, nil
}

// Handler returns the node's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if err := s.Store.Ping(r.Context()); err != nil {
		s.opts.Logger.Error("readiness: store unreachable", "error", err)
		http.Error(w, "store unreachable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Serve runs the node on ln until ctx ends, then shuts down in order: stop
// accepting webhooks (503), finish in-flight requests, commit queued events,
// let in-flight runs finish their step, close the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.unlock()
	defer s.Store.Close()
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}

	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	execCtx, stopExec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	defer stopExec()
	var g errgroup.Group
	engineDone := make(chan struct{})
	g.Go(func() error { defer close(engineDone); return s.Engine.Run(engineCtx) })
	g.Go(func() error { return s.Executor.Run(execCtx) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	s.draining.Store(true)
	s.opts.Logger.Info("shutting down: no new webhooks; finishing in-flight work", "grace", s.opts.ShutdownGrace)
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownGrace)
	defer cancel()
	if e := srv.Shutdown(shCtx); e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("http shutdown: %w", e))
	}
	stopEngine()
	<-engineDone
	stopExec()
	return errors.Join(err, g.Wait())
}

// logNotifier logs every dead run at error level and forwards it.
type logNotifier struct {
	log  *slog.Logger
	next delivery.Notifier
}

func (n logNotifier) RunDead(ctx context.Context, d delivery.DeadRun) {
	if n.next != nil {
		n.next.RunDead(ctx, d)
	}
}
