package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

const pollCols = `source, cursor, next_run_at, last_run_at, last_ok_at, cursor_moved_at, failures, last_error, last_found`

func scanPollState(row pgx.Row) (store.PollState, error) {
	var p store.PollState
	var cursor *string
	var last, ok, moved *time.Time
	if err := row.Scan(&p.Source, &cursor, &p.NextRunAt, &last, &ok, &moved, &p.Failures, &p.LastError, &p.LastFound); err != nil {
		return p, err
	}
	if cursor != nil {
		p.Cursor, p.HasCursor = *cursor, true
	}
	p.NextRunAt = p.NextRunAt.UTC()
	for _, t := range []struct {
		dst *time.Time
		src *time.Time
	}{{&p.LastRunAt, last}, {&p.LastOKAt, ok}, {&p.CursorMovedAt, moved}} {
		if t.src != nil {
			*t.dst = t.src.UTC()
		}
	}
	return p, nil
}

// InitPollState inserts the state unless it exists.
func (s *Store) InitPollState(ctx context.Context, source string, next time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO poll_state (source, next_run_at) VALUES ($1, $2) ON CONFLICT (source) DO NOTHING`, source, next)
	if err != nil {
		return fmt.Errorf("init poll state %s: %w", source, err)
	}
	return nil
}

// GetPollState returns one source's state.
func (s *Store) GetPollState(ctx context.Context, source string) (store.PollState, bool, error) {
	p, err := scanPollState(s.pool.QueryRow(ctx, `SELECT `+pollCols+` FROM poll_state WHERE source = $1`, source))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("get poll state %s: %w", source, err)
	}
	return p, true, nil
}

// ListPollStates returns every state by source name.
func (s *Store) ListPollStates(ctx context.Context) ([]store.PollState, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pollCols+` FROM poll_state ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("list poll states: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PollState, error) { return scanPollState(r) })
	if err != nil {
		return nil, fmt.Errorf("list poll states: %w", err)
	}
	return out, nil
}

// CommitPollPage stores a page and its cursor in one transaction. The seen
// row of each record is locked first, so two committers of the same record
// cannot both emit it.
func (s *Store) CommitPollPage(ctx context.Context, p store.PollPage) ([]store.PollResult, error) {
	out := make([]store.PollResult, len(p.Records))
	seenAs := cmp.Or(p.SeenAs, p.Source)
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i, r := range p.Records {
			// The row lock serialises writers of a record already seen;
			// for a new one the events' unique key decides.
			var before *string
			err := tx.QueryRow(ctx, `SELECT version FROM poll_records WHERE source = $1 AND record_id = $2 FOR UPDATE`,
				seenAs, r.RecordID).Scan(&before)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("read seen record: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO poll_records (source, record_id, version, seen_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (source, record_id) DO UPDATE SET version = excluded.version, seen_at = excluded.seen_at`,
				seenAs, r.RecordID, r.Version, p.Now); err != nil {
				return fmt.Errorf("remember record: %w", err)
			}
			if before != nil && *before == r.Version {
				out[i] = store.PollResult{Outcome: store.PollUnchanged}
				continue
			}
			e := r.Event
			tag, err := tx.Exec(ctx, `INSERT INTO events (id, source, key, received_at, payload, trace_parent) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (source, key) DO NOTHING`, e.ID, e.Source, e.Key, e.ReceivedAt, e.Payload, e.TraceParent)
			if err != nil {
				return fmt.Errorf("insert event: %w", err)
			}
			if tag.RowsAffected() == 0 {
				out[i] = store.PollResult{Outcome: store.PollKnown}
				continue
			}
			out[i] = store.PollResult{Outcome: store.PollEmitted, EventID: e.ID}
			if err := insertLineage(ctx, tx, e.ID, e.Lineage); err != nil {
				return err
			}
			for _, run := range e.Runs {
				if _, err := tx.Exec(ctx, `INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
					VALUES ($1, $2, $3, 'pending', $4, $5, $5, $5)`, run.ID, e.ID, run.Flow, run.StepID, e.ReceivedAt); err != nil {
					return fmt.Errorf("insert run: %w", err)
				}
				created = true
			}
		}
		if p.SetCursor {
			if _, err := tx.Exec(ctx, `INSERT INTO poll_state (source, cursor, next_run_at, cursor_moved_at) VALUES ($1, $2, $3, $3)
				ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor,
					cursor_moved_at = CASE WHEN poll_state.cursor IS NOT DISTINCT FROM excluded.cursor THEN poll_state.cursor_moved_at ELSE excluded.cursor_moved_at END`,
				p.Source, p.Cursor, p.Now); err != nil {
				return fmt.Errorf("store cursor: %w", err)
			}
		}
		if created {
			_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, channel)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit page of %s: %w", p.Source, err)
	}
	return out, nil
}

// FinishPoll records a run's end.
func (s *Store) FinishPoll(ctx context.Context, p store.PollRun) error {
	if p.Skipped {
		if _, err := s.pool.Exec(ctx, `INSERT INTO poll_state (source, next_run_at) VALUES ($1, $2)
			ON CONFLICT (source) DO UPDATE SET next_run_at = excluded.next_run_at`, p.Source, p.NextRunAt); err != nil {
			return fmt.Errorf("finish skipped poll %s: %w", p.Source, err)
		}
		return nil
	}
	var ok *time.Time
	if p.Error == "" {
		ok = &p.Now
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO poll_state (source, next_run_at, last_run_at, last_ok_at, failures, last_error, last_found)
		VALUES ($1, $2, $3, $4, CASE WHEN $5 = '' THEN 0 ELSE 1 END, $5, $6)
		ON CONFLICT (source) DO UPDATE SET next_run_at = excluded.next_run_at, last_run_at = excluded.last_run_at,
			last_found = excluded.last_found,
			last_ok_at = COALESCE(excluded.last_ok_at, poll_state.last_ok_at),
			failures = CASE WHEN excluded.last_error = '' THEN 0 ELSE poll_state.failures + 1 END,
			last_error = excluded.last_error`,
		p.Source, p.NextRunAt, p.Now, ok, store.Text(p.Error), p.Found)
	if err != nil {
		return fmt.Errorf("finish poll %s: %w", p.Source, err)
	}
	return nil
}

// SeenVersions reads the seen versions of ids.
func (s *Store) SeenVersions(ctx context.Context, source string, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT record_id, version FROM poll_records WHERE source = $1 AND record_id = ANY($2)`, source, ids)
	if err != nil {
		return nil, fmt.Errorf("seen versions of %s: %w", source, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, version string
		if err := rows.Scan(&id, &version); err != nil {
			return nil, fmt.Errorf("seen versions of %s: %w", source, err)
		}
		out[id] = version
	}
	return out, rows.Err()
}
