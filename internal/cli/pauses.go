package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// pauseWatch holds a command that calls systems outside the executor
// (backfill, reconcile) to the store's paused systems, as a serving node's
// calls are. Create with watchPauses; call stop.
type pauseWatch struct {
	sync    *delivery.PauseSync
	systems []string // the systems the command calls
	cfgPath string
	stop    func() // ends the sync and waits for it
}

// watchPauses refuses to start a command while one of the systems it
// calls is paused, saying by whom and since when, and until stop reads the
// store's pauses every 2 s (delivery.PauseSync, which applies them to
// gates too), so that a pause applied meanwhile (an operator's, another
// node's 401) ends the command before its next call (check, as
// poll.Config.StopFunc). The command neither waits for a resume nor
// probes: an operator's pause has no end, and a command waiting for hours
// in a terminal or a cron job says nothing; one stopped with its cursor
// saved costs nothing to run again.
func watchPauses(ctx context.Context, e env, st store.Store, cfgPath string, gates map[string]*limit.Gate, systems ...string) (*pauseWatch, error) {
	w := &pauseWatch{sync: &delivery.PauseSync{Store: st, Gates: gates, Logger: commandLogger(e)}, systems: systems, cfgPath: cfgPath}
	if _, err := w.sync.Sync(ctx); err != nil {
		return nil, fmt.Errorf("read paused systems: %w", err)
	}
	if err := w.check(""); err != nil {
		return nil, fmt.Errorf("not started: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.sync.Run(ctx) }()
	w.stop = func() { cancel(); <-done }
	return w, nil
}

// check returns a *stoppedByPause when the last read of the store found one
// of the command's systems paused: whichever system the command is about
// to call (a poll.Config.StopFunc), since it would call the paused one
// later.
func (w *pauseWatch) check(string) error {
	for _, sys := range w.systems {
		if p, ok := w.sync.Paused(sys); ok {
			return &stoppedByPause{pause: p, cfgPath: w.cfgPath}
		}
	}
	return nil
}

// stoppedByPause stops a command: a system it calls is paused. It says who
// or what paused it, when, and how it is resumed.
type stoppedByPause struct {
	pause   store.SystemPause
	cfgPath string
}

func (e *stoppedByPause) Error() string {
	p := e.pause
	at := p.PausedAt.UTC().Format(time.RFC3339)
	resume := fmt.Sprintf("`switchboard systems resume %s --config %s`", p.System, e.cfgPath)
	if p.Reason == store.OperatorPause {
		return fmt.Sprintf("system %s is paused: by an operator at %s; nothing calls it until %s", p.System, at, resume)
	}
	return fmt.Sprintf("system %s is paused: it refused our credentials (%s) at %s; serving nodes resume it when their probe (one call a minute) succeeds, or %s does once the credentials are fixed",
		p.System, p.Reason, at, resume)
}
