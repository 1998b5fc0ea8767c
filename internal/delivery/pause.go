package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// syncEvery is how often a PauseSync reads the store's paused systems: how
// long a pause recorded by one node or an operator takes, at most, to hold
// another node's calls (and a resume to let them go).
const syncEvery = 2 * time.Second

// PauseStore is what a PauseSync needs of the store.
type PauseStore interface {
	ListPauses(ctx context.Context) ([]store.SystemPause, error)
}

// PauseSync applies the store's paused systems to one process's gates: a
// pause another node recorded (it saw a 401 or 403), an operator's
// `switchboard systems pause`, and their lifting. The executor runs one for
// its node; so do the commands that call systems outside it (backfill,
// reconcile), so a pause holds their calls too.
type PauseSync struct {
	Store PauseStore
	Gates map[string]*limit.Gate
	// Logger gets Run's failed reads. Optional.
	Logger *slog.Logger
	// WakeFunc, when set, is called for each system whose held runs a read
	// lets go: it lifted the pause on the system's gate, or turned an
	// operator's pause there into a credential pause (see
	// limit.Gate.Pause).
	WakeFunc func(ctx context.Context, system string)

	mu     sync.Mutex                   // guards the field below
	paused map[string]store.SystemPause // the last read's, by system
}

// Paused returns system's pause as the last read found it in the store.
// The system's gate may say otherwise until the next read: a call in
// flight when a credential pause was applied lifts it there if it
// succeeds, as it shows the credentials work.
func (s *PauseSync) Paused(system string) (store.SystemPause, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.paused[system]
	return p, ok
}

// Run syncs the gates every 2 s until ctx ends. A failed read is logged
// and the gates stay as they were until the next one. Its users read once
// with Sync before anything calls a system (serve, through
// Executor.SyncPauses; the command line's watchPauses), so Run's first read
// is one interval in.
func (s *PauseSync) Run(ctx context.Context) {
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sync(ctx); err != nil && ctx.Err() == nil && s.Logger != nil {
			s.Logger.Warn("read paused systems", "error", err)
		}
	}
}

// Sync reads the store's paused systems once, applies them to the gates,
// and returns them.
func (s *PauseSync) Sync(ctx context.Context) ([]store.SystemPause, error) {
	// Marked before the read: a refusal seen here whose record had not
	// committed by then is not the read's to lift (see limit.Gate.Resume).
	marks := make(map[string]limit.Mark, len(s.Gates))
	for name, g := range s.Gates {
		marks[name] = g.Mark()
	}
	pauses, err := s.Store.ListPauses(ctx)
	if err != nil {
		return nil, err
	}
	paused := map[string]store.SystemPause{}
	for _, p := range pauses {
		paused[p.System] = p
	}
	s.mu.Lock()
	s.paused = paused
	s.mu.Unlock()
	for name, g := range s.Gates {
		p, isPaused := paused[name]
		switch {
		case isPaused && p.Reason == store.OperatorPause:
			g.Pause(marks[name], false) // holds until resumed, even over a pause already probing
		case isPaused:
			// A refusal another node saw is probed like one seen here.
			if g.Pause(marks[name], true) && s.WakeFunc != nil {
				s.WakeFunc(ctx, name)
			}
		case g.Resume(marks[name]) && s.WakeFunc != nil:
			s.WakeFunc(ctx, name)
		}
	}
	return pauses, nil
}

// SyncPauses reads the store's paused systems once and applies them to the
// gates, which the timed sources share. A node's gates start unpaused:
// serve calls this before the executor and the timed sources start, so
// neither calls a paused system in the seconds before the first periodic
// read.
func (x *Executor) SyncPauses(ctx context.Context) error {
	_, err := x.pauses.Sync(ctx)
	return err
}

// WatchPauses keeps the gates in step with the store's pauses until ctx
// ends, as Run does: for a node whose timed sources call systems while it
// executes no runs (serve --no-executor).
func (x *Executor) WatchPauses(ctx context.Context) { x.pauses.Run(ctx) }

// wakeHeld wakes the runs held for system, which a read of the store found
// resumed, or paused for refused credentials where this node had an
// operator's pause: runs this node held between the resume and now wait
// for a probe time that is no longer coming, and runs held for the
// operator would wait up to ten minutes while the system is probed every
// minute, with none of them there to be the probe.
//
// The write outlives ctx (bounded by CommitTimeout), as LiftPause's do: the
// read has changed the gate's pause already, so no later read wakes the
// runs, and a read cut off just after it (shutdown) would leave them
// waiting for their next check, up to the hold (minutes).
func (x *Executor) wakeHeld(ctx context.Context, system string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.cfg.CommitTimeout)
	defer cancel()
	if _, err := x.cfg.Store.WakeHeld(ctx, system, x.cfg.NowFunc()); err != nil {
		x.cfg.Logger.Warn("wake runs held for a system resumed or now probed; they go at their next check", "system", system, "error", err)
	}
}

// LiftPause lifts, on every node, the credential pause of system that a
// call's success has just lifted on this node (its gate's done reported
// resumed): it deletes the pause from the store, wakes the runs held for
// the system, logs, and tells the notifier. The executor calls it for its
// steps; the poller, through its ResumedFunc, for its page reads. Safe for
// concurrent use. A store error is logged: the store's pause then stays,
// and this node's sync applies it again within seconds.
//
// The writes outlive ctx (bounded by CommitTimeout): the caller's call has
// already succeeded and lifted the pause here, and a caller cut off right
// after it (shutdown, a poll's timeout) would otherwise leave the store's
// pause holding every other node until the next probe, a minute later.
func (x *Executor) LiftPause(ctx context.Context, system string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.cfg.CommitTimeout)
	defer cancel()
	// Never an operator's pause: this node may not have read one applied
	// since the call began (pauses sync every 2 s).
	resumed, err := x.cfg.Store.ResumeCredentialPause(ctx, system)
	if err != nil {
		x.cfg.Logger.Warn("record system resumed; other nodes keep it paused until a probe succeeds there or here", "system", system, "error", err)
	}
	if !resumed {
		return
	}
	n, err := x.cfg.Store.WakeHeld(ctx, system, x.cfg.NowFunc())
	if err != nil {
		x.cfg.Logger.Warn("wake runs held for a resumed system; they go at their next check", "system", system, "error", err)
	}
	x.cfg.Logger.Info("system resumed: a call to it succeeded", "system", system, "woken_runs", n)
	if n, ok := x.cfg.Notifier.(SystemNotifier); ok {
		n.SystemResumed(system)
	}
}
