// Package leader runs singleton duties (retention today; polling and alert
// evaluation later) on exactly one node at a time, through a named lease in
// the store. When the holder dies, its lease expires and another node takes
// the duty over within one lease period. On a store no other node can use
// (Config.Exclusive) duties simply run.
package leader

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Leaser is the store's lease API.
type Leaser interface {
	AcquireLease(ctx context.Context, p store.LeaseParams) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Duty is a singleton: Name keys the lease, Run does the work until its
// context ends (it is cancelled when leadership is lost).
type Duty struct {
	Name string
	Run  func(ctx context.Context)
}

// Config configures an Elector.
type Config struct {
	Store Leaser
	// Node identifies this process in the lease (host, pid, random).
	Node string
	// TTL is how long a lease lasts unless renewed; it is renewed every
	// third of it, so a live leader never loses it to a slow round trip.
	TTL     time.Duration
	Logger  *slog.Logger
	NowFunc func() time.Time
	// Exclusive says no other node can share the store (SQLite, whose
	// file this process holds locked): duties run without a lease. A lease
	// would only tie them to the store's writes, and a full disk would
	// stop the alert rules, which only read, exactly when they are needed.
	Exclusive bool
}

// Elector runs duties while it holds their leases.
type Elector struct{ cfg Config }

// New returns an Elector.
func New(cfg Config) *Elector {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	return &Elector{cfg: cfg}
}

// Run campaigns for d until ctx ends: whenever it holds the lease it runs
// the duty, and it cancels the duty the moment a renewal fails. On return
// it releases the lease so another node can take over at once.
func (e *Elector) Run(ctx context.Context, d Duty) error {
	log := e.cfg.Logger.With("duty", d.Name, "node", e.cfg.Node)
	if e.cfg.Exclusive {
		log.Info("running duty (the only node on its store)")
		d.Run(ctx)
		return nil
	}
	tick := time.NewTicker(e.cfg.TTL / 3)
	defer tick.Stop()
	var active *running
	defer func() {
		if active != nil {
			active.stop()
			// Bounded like a renewal: an unreachable store must not hold
			// up the node's shutdown; the lease then simply expires.
			relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL/3)
			defer cancel()
			if err := e.cfg.Store.ReleaseLease(relCtx, d.Name, e.cfg.Node); err != nil {
				log.Warn("lease not released: another node takes over when it expires", "error", err)
				return
			}
			log.Info("leadership released")
		}
	}()
	for {
		now := e.cfg.NowFunc()
		// A renewal that hangs (a full pool, a stalled network) must not
		// keep the duty running past the lease another node may then take:
		// each try is bounded by a third of the lease, and a failed or late
		// one stops the duty.
		tryCtx, cancel := context.WithTimeout(ctx, e.cfg.TTL/3)
		held, err := e.cfg.Store.AcquireLease(tryCtx, store.LeaseParams{Name: d.Name, Holder: e.cfg.Node, Now: now, Until: now.Add(e.cfg.TTL)})
		cancel()
		if ctx.Err() != nil {
			// Shutting down: the renewal was cut off, not refused. Return
			// so the deferred release hands the lease over at once.
			return nil
		}
		if err != nil {
			log.Error("lease renewal failed", "error", err)
			held = false
		}
		switch {
		case held && active == nil:
			log.Info("leadership acquired: running duty")
			active = start(ctx, d.Run)
		case !held && active != nil:
			log.Warn("leadership lost: duty stopped")
			active.stop()
			active = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// running is a duty in progress.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func start(ctx context.Context, fn func(context.Context)) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); fn(ctx) }()
	return r
}

// stop cancels the duty and waits for it to return.
func (r *running) stop() {
	r.cancel()
	<-r.done
}
