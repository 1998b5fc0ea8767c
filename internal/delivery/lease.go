package delivery

import (
	"context"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

func (x *Executor) track(runID, token string) {
	x.mu.Lock()
	x.inflight[runID] = token
	x.mu.Unlock()
}

// untrack forgets a run, unless this node has claimed it again since
// (its lease lapsed): the newer claim's lease must keep being renewed.
func (x *Executor) untrack(runID, token string) {
	x.mu.Lock()
	if x.inflight[runID] == token {
		delete(x.inflight, runID)
	}
	x.mu.Unlock()
}

// renew extends the leases of runs in flight every third of a lease, so a
// slow step keeps its run while a dead node's runs expire.
func (x *Executor) renew(ctx context.Context) {
	t := time.NewTicker(x.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		x.renewRound(ctx)
	}
}

// renewRound extends the lease of every run in flight.
func (x *Executor) renewRound(ctx context.Context) {
	x.mu.Lock()
	byToken := map[string][]string{}
	for id, tok := range x.inflight {
		byToken[tok] = append(byToken[tok], id)
	}
	x.mu.Unlock()
	// The round is bounded at half a lease: a slow renewal still lands
	// before the leases lapse (two intervals after the last), while one
	// hung on a connection the database stopped answering would hold every
	// later renewal (until TCP gives up, minutes). Each renewal extends from
	// its own start, not the round's.
	rctx, cancel := context.WithTimeout(ctx, x.cfg.Lease/2)
	defer cancel()
	for tok, ids := range byToken {
		now := x.cfg.NowFunc()
		err := x.cfg.Store.ExtendLeases(rctx, store.ExtendParams{Token: tok, RunIDs: ids, LeaseUntil: now.Add(x.cfg.Lease), Now: now})
		if err != nil && ctx.Err() == nil {
			x.cfg.Logger.Error("extend leases", "runs", len(ids), "error", err)
		}
	}
}

// clockWatch tells when the wall clock stepped forward (NTP correcting a
// clock that ran slow, a VM resumed) by comparing it with the monotonic
// clock, which only counts time that passed.
type clockWatch struct {
	wall time.Time // NowFunc's reading
	mono time.Time // time.Now's, for its monotonic part
}

// stepped reports whether wall moved ahead of real time by more than
// limit since the last call.
func (c *clockWatch) stepped(wall time.Time, limit time.Duration) bool {
	mono := time.Now()
	prev := *c
	*c = clockWatch{wall: wall, mono: mono}
	if prev.wall.IsZero() {
		return false
	}
	return wall.Round(0).Sub(prev.wall.Round(0))-mono.Sub(prev.mono) > limit
}
