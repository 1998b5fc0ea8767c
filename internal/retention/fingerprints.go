package retention

import (
	"context"
	"log/slog"
	"time"
)

// FingerprintStore is the store method fingerprint pruning needs.
type FingerprintStore interface {
	PruneFingerprints(ctx context.Context, before time.Time, limit int) (int, error)
}

// Fingerprints prunes the fingerprints of our writes once they are older
// than the echo window: after that no echo can match them.
type Fingerprints struct {
	Store FingerprintStore
	// Window is the echo window; fingerprints older than twice it go (the
	// margin covers clocks a little apart between nodes).
	Window time.Duration
	// Every is the pause between prunes. Default 1m.
	Every   time.Duration
	Logger  *slog.Logger
	NowFunc func() time.Time
}

// Run prunes at once and then every f.Every until ctx ends.
func (f Fingerprints) Run(ctx context.Context) {
	if f.Every <= 0 {
		f.Every = time.Minute
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if f.NowFunc == nil {
		f.NowFunc = time.Now
	}
	for {
		n, err := f.Prune(ctx)
		if err != nil && ctx.Err() == nil {
			f.Logger.Error("prune fingerprints", "deleted", n, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Every):
		}
	}
}

// Prune deletes every expired fingerprint, 1000 per transaction.
func (f Fingerprints) Prune(ctx context.Context) (int, error) {
	now := time.Now
	if f.NowFunc != nil {
		now = f.NowFunc
	}
	before := now().Add(-2 * f.Window)
	total := 0
	for ctx.Err() == nil {
		n, err := f.Store.PruneFingerprints(ctx, before, 1000)
		total += n
		if err != nil || n < 1000 {
			return total, err
		}
	}
	return total, ctx.Err()
}
