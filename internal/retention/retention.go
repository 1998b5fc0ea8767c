// Package retention deletes events, with their runs and attempts, once they
// are older than the configured retention and all their runs have finished,
// and the fingerprints of our writes once no echo can match them. It
// deletes in small batches so no transaction holds the store for long.
package retention

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Deleter is the store method retention needs.
type Deleter interface {
	DeleteExpired(ctx context.Context, p store.DeleteParams) (store.DeleteResult, error)
}

// Config configures a Sweeper.
type Config struct {
	// Store and Keep are the events' (New only).
	Store Deleter
	// Keep is the retention period.
	Keep time.Duration
	// Every is the pause between sweeps. Default 10m.
	Every time.Duration
	// Batch is the most rows one transaction deletes; for events, the
	// most it examines, deleting those whose runs have all finished.
	// Default 500.
	Batch   int
	Logger  *slog.Logger
	NowFunc func() time.Time
}

// Sweeper deletes expired rows in batches: events (New), or fingerprints
// (NewFingerprints).
type Sweeper struct {
	cfg Config
	// what names the rows in logs; cutoff gives the oldest time kept, and
	// pass starts a sweep of the rows older than before: each call of the
	// function it returns deletes one batch, and done reports that the
	// sweep is over.
	what   string
	cutoff func(now time.Time) time.Time
	pass   func(before time.Time) batchFunc
	// kept counts the expired events the current sweep kept for their
	// unfinished runs (events only).
	kept int
}

type batchFunc func(ctx context.Context) (deleted int, done bool, err error)

// New returns a Sweeper of events older than cfg.Keep whose runs are done.
func New(cfg Config) *Sweeper {
	s := newSweeper(cfg, "events", func(now time.Time) time.Time { return now.Add(-cfg.Keep) })
	s.pass = func(before time.Time) batchFunc {
		// Each batch starts where the previous one stopped, so the events
		// kept for their unfinished runs are read once per sweep, not once
		// per batch.
		p := store.DeleteParams{Before: before, Limit: s.cfg.Batch}
		return func(ctx context.Context) (int, bool, error) {
			r, err := cfg.Store.DeleteExpired(ctx, p)
			p.After, p.AfterID = r.Last, r.LastID
			s.kept += r.Kept
			return r.Deleted, r.Done, err
		}
	}
	return s
}

// FingerprintStore is the store method fingerprint pruning needs.
type FingerprintStore interface {
	PruneFingerprints(ctx context.Context, before time.Time, limit int) (int, error)
}

// NewFingerprints returns a Sweeper of the fingerprints of our writes older
// than twice the echo window (the margin covers clocks a little apart
// between nodes): after the window no echo can match them. It sweeps every
// minute, 1000 per transaction, unless cfg says otherwise.
func NewFingerprints(st FingerprintStore, window time.Duration, cfg Config) *Sweeper {
	if cfg.Every <= 0 {
		cfg.Every = time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	s := newSweeper(cfg, "fingerprints", func(now time.Time) time.Time { return now.Add(-2 * window) })
	s.pass = func(before time.Time) batchFunc {
		return func(ctx context.Context) (int, bool, error) {
			n, err := st.PruneFingerprints(ctx, before, s.cfg.Batch)
			return n, n < s.cfg.Batch, err
		}
	}
	return s
}

func newSweeper(cfg Config, what string, cutoff func(time.Time) time.Time) *Sweeper {
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
	return &Sweeper{cfg: cfg, what: what, cutoff: cutoff}
}

// Run sweeps at once and then every cfg.Every until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	for {
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Error("retention sweep failed", "rows", s.what, "deleted", n, "error", err)
		case (n > 0 || s.kept > 0) && s.what == "events":
			// Expired events kept for their unfinished runs: a count that
			// only grows points at runs stuck (a paused system, say).
			s.cfg.Logger.Info("retention sweep", "deleted_events", n, "kept_events", s.kept, "keep", s.cfg.Keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Every):
		}
	}
}

// Sweep deletes every expired row, one batch per transaction, and
// returns how many went.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	batch := s.pass(s.cutoff(s.cfg.NowFunc()))
	s.kept = 0
	total := 0
	for ctx.Err() == nil {
		n, done, err := batch(ctx)
		total += n
		if err != nil || done {
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
