package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Statements prepared once at Open (see Store.stmt).
const (
	qInsEvent = `INSERT INTO events (id, source, key, received_at, payload, trace_parent)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, key) DO NOTHING`
	qInsRun = `INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
			VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)`
	qFindEvent = `SELECT id FROM events WHERE source = ? AND key = ?`
)

// InsertEvents stores a batch in one transaction: one fsync for all of it.
// Dedupe relies on the unique index, never on a prior SELECT, so two
// concurrent batches holding the same key cannot both insert it.
func (s *Store) InsertEvents(ctx context.Context, events []store.NewEvent) ([]store.InsertResult, error) {
	results := make([]store.InsertResult, len(events))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		insEvent, err := s.stmt(ctx, tx, qInsEvent)
		if err != nil {
			return err
		}
		insRun, err := s.stmt(ctx, tx, qInsRun)
		if err != nil {
			return err
		}
		findEvent, err := s.stmt(ctx, tx, qFindEvent)
		if err != nil {
			return err
		}
		for i, e := range events {
			at := micros(e.ReceivedAt)
			res, err := insEvent.ExecContext(ctx, e.ID, e.Source, e.Key, at, e.Payload, e.TraceParent)
			if err != nil {
				return fmt.Errorf("insert event: %w", err)
			}
			id := e.ID
			if n, _ := res.RowsAffected(); n == 0 {
				if err := findEvent.QueryRowContext(ctx, e.Source, e.Key).Scan(&id); err != nil {
					return fmt.Errorf("find duplicate event: %w", err)
				}
				results[i] = store.InsertResult{EventID: id, Duplicate: true}
				continue
			}
			results[i] = store.InsertResult{EventID: id}
			if !e.Lineage.IsZero() {
				if err := insertLineage(ctx, tx, id, e.Lineage); err != nil {
					return err
				}
			}
			for _, r := range e.Runs {
				if _, err := insRun.ExecContext(ctx, r.ID, id, r.Flow, r.StepID, at, at, at); err != nil {
					return fmt.Errorf("insert run: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

const eventCols = `id, source, key, received_at, payload, trace_parent`

func scanEvent(row interface{ Scan(...any) error }) (store.Event, error) {
	var e store.Event
	var at int64
	if err := row.Scan(&e.ID, &e.Source, &e.Key, &at, &e.Payload, &e.TraceParent); err != nil {
		return e, err
	}
	e.ReceivedAt = fromMicros(at)
	return e, nil
}

// GetEvent returns one event.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	e, err := scanEvent(s.r.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("event %s: %w", id, store.ErrNotFound)
	}
	return e, err
}

// ListEvents returns events newest first.
func (s *Store) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	q := `SELECT ` + eventCols + ` FROM events WHERE 1=1`
	var args []any
	if p.Source != "" {
		q += ` AND source = ?`
		args = append(args, p.Source)
	}
	if !p.Before.IsZero() {
		q += ` AND received_at < ?`
		args = append(args, micros(p.Before))
	}
	q += ` ORDER BY received_at DESC, id DESC LIMIT ?`
	args = append(args, limit(p.Limit))
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func limit(n int) int {
	if n <= 0 {
		return 100
	}
	return n
}
