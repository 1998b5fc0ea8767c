// Package retention deletes events, with their runs and attempts, once they
// are older than the configured retention and all their runs have finished.
// It deletes in small batches so no transaction holds the store for long.
package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Deleter is the store method retention needs.
type Deleter interface {
	DeleteExpired(ctx context.Context, p store.DeleteParams) (int, error)
}

// Config configures a Sweeper.
type Config struct {
	Store Deleter
	// Keep is the retention period.
	Keep time.Duration
	// Every is the pause between sweeps. Default 10m.
	Every time.Duration
	// Batch is how many events one transaction deletes. Default 500.
	Batch   int
	Logger  *slog.Logger
	NowFunc func() time.Time
}

// Sweeper deletes expired events.
type Sweeper struct{ cfg Config }

// New returns a Sweeper.
func New(cfg Config) *Sweeper {
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	return &Sweeper{cfg: cfg}
}

// Run sweeps at once and then every cfg.Every until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	for {
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Error("retention sweep failed", "deleted", n, "error", err)
		case n > 0:
			s.cfg.Logger.Info("retention sweep", "deleted_events", n, "keep", s.cfg.Keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Every):
		}
	}
}

// Sweep deletes every expired event, one batch per transaction, and
// returns how many went.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	before := s.cfg.NowFunc().Add(-s.cfg.Keep)
	total := 0
	for ctx.Err() == nil {
		n, err := s.cfg.Store.DeleteExpired(ctx, store.DeleteParams{Before: before, Limit: s.cfg.Batch})
		total += n
		if err != nil || n < s.cfg.Batch {
			return total, err
		}
		// Let ingest's commits in between batches.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return total, ctx.Err()
}
