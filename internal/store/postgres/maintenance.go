package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// NextDue reads the head of the runnable index.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(due_at) FROM runs WHERE state IN ('pending', 'retrying', 'running')`).Scan(&due)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	if due == nil {
		return time.Time{}, false, nil
	}
	return due.UTC(), true, nil
}

// AcquireLease is one upsert: it inserts the lease, or takes it over when
// it is ours or has expired; otherwise the WHERE leaves it and returns no row.
func (s *Store) AcquireLease(ctx context.Context, p store.LeaseParams) (bool, error) {
	var holder string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
		RETURNING holder`, p.Name, p.Holder, p.Until, p.Now).Scan(&holder)
	if isNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", p.Name, err)
	}
	return holder == p.Holder, nil
}

// ReleaseLease deletes the lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// DeleteExpired is one batch of a retention pass, in one transaction of two
// statements: the first locks the next p.Limit expired events after the
// pass's position in (received_at, id) order, the second deletes those of
// them that have no unfinished run; ON DELETE CASCADE removes their runs,
// checkpoints and attempts. An event kept for its unfinished runs is read
// (and locked) by one batch of the pass, not again by every later one, so a
// batch's cost does not grow with the number of such events. SKIP LOCKED
// passes over events another transaction holds (a replay, a retry) instead
// of waiting; they are kept until the next pass.
//
// Only the second statement decides, after the locks are granted. Every
// path that makes a run of an existing event unfinished again holds that
// event's row lock while it does (RetryRun, ReplayEvent, and the foreign
// key check of any run inserted), so once we hold the lock no run of the
// event can become unfinished until we commit. The DELETE's NOT EXISTS reads
// a snapshot taken when the DELETE starts, after the locks were granted, in
// which every run made unfinished under an earlier lock is committed and
// visible. Deciding in the locking statement would not do: under READ
// COMMITTED a statement's subqueries read the snapshot taken when it
// started, and neither skipping nor waiting for a lock refreshes it. (The
// re-check after a wait, EvalPlanQual, re-reads only a newer version of the
// locked row itself, and a lock released at commit leaves none; the runs
// are not re-read.) A retry committed between that snapshot and our lock
// would go unseen, and the cascade would delete the run it had just made
// pending, after the operator was told it was.
//
// Each event's runs are looked up by runs_event alone (OFFSET 0 keeps the
// lookup a subquery of its own; see queueClaim): on tables it had not yet
// analyzed, PostgreSQL otherwise ANDed that index with the whole of
// runs_runnable for every event, and a batch behind 40,000 kept events took
// ~0.8 s instead of ~8 ms (BenchmarkDeleteExpired).
func (s *Store) DeleteExpired(ctx context.Context, p store.DeleteParams) (store.DeleteResult, error) {
	n := limit(p.Limit)
	var res store.DeleteResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT received_at, id FROM events
			WHERE received_at < $1 AND (received_at, id) > ($2, $3)
			ORDER BY received_at, id LIMIT $4 FOR UPDATE SKIP LOCKED`, p.Before, p.After, p.AfterID, n)
		if err != nil {
			return err
		}
		var ids []string
		var at time.Time
		if _, err := pgx.ForEachRow(rows, []any{&at, &res.LastID}, func() error {
			ids = append(ids, res.LastID)
			return nil
		}); err != nil {
			return err
		}
		res.Done = len(ids) < n
		if len(ids) == 0 {
			return nil
		}
		res.Last = at.UTC()
		tag, err := tx.Exec(ctx, `DELETE FROM events e WHERE e.id = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM (SELECT state FROM runs r WHERE r.event_id = e.id OFFSET 0) r
				WHERE r.state IN ('pending', 'running', 'retrying'))`, ids)
		res.Deleted = int(tag.RowsAffected())
		res.Kept = len(ids) - res.Deleted
		return err
	})
	if err != nil {
		return store.DeleteResult{}, fmt.Errorf("delete expired events: %w", err)
	}
	return res, nil
}

// QueueStats groups the unfinished and dead runs by flow.
func (s *Store) QueueStats(ctx context.Context) ([]store.FlowStats, error) {
	// Two arms whose WHERE clauses are exactly the partial indexes'
	// predicates (runs_runnable, runs_dead), so finished runs are never read.
	rows, err := s.pool.Query(ctx, `SELECT flow, state, n, oldest FROM (
			SELECT flow, state, count(*) AS n, min(created_at) AS oldest FROM runs
			WHERE state IN ('pending', 'retrying', 'running') GROUP BY flow, state
			UNION ALL
			SELECT flow, state, count(*), min(created_at) FROM runs WHERE state = 'dead' GROUP BY flow, state
		) s ORDER BY flow`)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	defer rows.Close()
	var out []store.FlowStats
	for rows.Next() {
		var g struct {
			flow   string
			state  store.RunState
			n      int
			oldest time.Time
		}
		if err := rows.Scan(&g.flow, &g.state, &g.n, &g.oldest); err != nil {
			return nil, err
		}
		out = store.AddFlowStats(out, g.flow, g.state, g.n, g.oldest)
	}
	return out, rows.Err()
}

// LastEventAt reads the newest event of a source from the index on
// (source, received_at).
func (s *Store) LastEventAt(ctx context.Context, source string) (time.Time, bool, error) {
	var at *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT max(received_at) FROM events WHERE source = $1`, source).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("last event of %s: %w", source, err)
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return at.UTC(), true, nil
}

// AttemptStats counts recent attempts by system and outcome.
func (s *Store) AttemptStats(ctx context.Context, since time.Time) ([]store.AttemptCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT system, outcome, count(*) FROM attempts WHERE started_at >= $1
		GROUP BY system, outcome ORDER BY system, outcome`, since)
	if err != nil {
		return nil, fmt.Errorf("attempt stats: %w", err)
	}
	defer rows.Close()
	var out []store.AttemptCount
	for rows.Next() {
		var c store.AttemptCount
		if err := rows.Scan(&c.System, &c.Outcome, &c.Count); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
