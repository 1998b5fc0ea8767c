package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

const qNextDue = `SELECT min(due_at) FROM runs WHERE ` + runnable

// NextDue reads the head of the runnable index.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due sql.NullInt64
	err := s.r.QueryRowContext(ctx, qNextDue).Scan(&due)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	if !due.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(due.Int64), true, nil
}

// AcquireLease is one upsert: it inserts the lease, or takes it over when
// it is ours or has expired; otherwise it changes nothing.
func (s *Store) AcquireLease(ctx context.Context, p store.LeaseParams) (bool, error) {
	if err := s.writable(ctx); err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", p.Name, err)
	}
	var holder string
	err := s.w.QueryRowContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= ?
		RETURNING holder`, p.Name, p.Holder, micros(p.Until), micros(p.Now)).Scan(&holder)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", p.Name, err)
	}
	return holder == p.Holder, nil
}

// ReleaseLease deletes the lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// DeleteExpired is one batch of a retention pass. It reads the next
// p.Limit expired events after the pass's position in (received_at, id)
// order, noting which have no unfinished run, and deletes those by id; ON
// DELETE CASCADE removes their runs, checkpoints and attempts. An event kept
// for its unfinished runs is read by one batch of the pass, not again by
// every later one, so a batch's cost, and how long it holds the write lock
// ingest waits for, does not grow with the number of such events. Small
// batches keep that lock short.
//
// Unlike PostgreSQL's, it needs no row locks to be safe from a concurrent
// retry or replay: its two statements are one BEGIN IMMEDIATE transaction,
// which holds SQLite's write lock from before the read until the commit,
// and RetryRun and ReplayEvent write through the same one writer
// connection. One of them runs wholly before the other.
func (s *Store) DeleteExpired(ctx context.Context, p store.DeleteParams) (store.DeleteResult, error) {
	n := limit(p.Limit)
	var res store.DeleteResult
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT e.received_at, e.id,
				NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND `+runnable+`)
			FROM events e WHERE e.received_at < ? AND (e.received_at, e.id) > (?, ?)
			ORDER BY e.received_at, e.id LIMIT ?`, micros(p.Before), micros(p.After), p.AfterID, n)
		if err != nil {
			return err
		}
		defer rows.Close()
		var finished []any
		examined := 0
		for rows.Next() {
			var at int64
			var done bool
			if err := rows.Scan(&at, &res.LastID, &done); err != nil {
				return err
			}
			res.Last = fromMicros(at)
			examined++
			if done {
				finished = append(finished, res.LastID)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		res.Done = examined < n
		res.Kept = examined - len(finished)
		if len(finished) == 0 {
			return nil
		}
		r, err := tx.ExecContext(ctx, `DELETE FROM events WHERE id IN (`+placeholders(len(finished))+`)`, finished...)
		if err != nil {
			return err
		}
		deleted, err := r.RowsAffected()
		res.Deleted = int(deleted)
		return err
	})
	if err != nil {
		return store.DeleteResult{}, fmt.Errorf("delete expired events: %w", err)
	}
	return res, nil
}

// qQueueStats has two arms whose WHERE clauses are exactly the partial
// indexes' predicates (runs_runnable, runs_dead), so finished runs are never
// read.
const qQueueStats = `SELECT flow, state, n, oldest FROM (
			SELECT flow, state, count(*) AS n, min(created_at) AS oldest FROM runs
			WHERE ` + runnable + ` GROUP BY flow, state
			UNION ALL
			SELECT flow, state, count(*), min(created_at) FROM runs WHERE state = 'dead' GROUP BY flow, state
		) ORDER BY flow`

// QueueStats groups the unfinished and dead runs by flow.
func (s *Store) QueueStats(ctx context.Context) ([]store.FlowStats, error) {
	rows, err := s.r.QueryContext(ctx, qQueueStats)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	defer rows.Close()
	var out []store.FlowStats
	for rows.Next() {
		var flow string
		var state store.RunState
		var n int
		var oldest int64
		if err := rows.Scan(&flow, &state, &n, &oldest); err != nil {
			return nil, err
		}
		out = store.AddFlowStats(out, flow, state, n, fromMicros(oldest))
	}
	return out, rows.Err()
}

// LastEventAt reads the newest event of a source from the index on
// (source, received_at).
func (s *Store) LastEventAt(ctx context.Context, source string) (time.Time, bool, error) {
	var at sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT max(received_at) FROM events WHERE source = ?`, source).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("last event of %s: %w", source, err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(at.Int64), true, nil
}

// AttemptStats counts recent attempts by system and outcome.
func (s *Store) AttemptStats(ctx context.Context, since time.Time) ([]store.AttemptCount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT system, outcome, count(*) FROM attempts WHERE started_at >= ?
		GROUP BY system, outcome ORDER BY system, outcome`, micros(since))
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
