package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

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
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		w, err := s.eventWriter(ctx, tx)
		if err != nil {
			return err
		}
		findEvent, err := s.stmt(ctx, tx, qFindEvent)
		if err != nil {
			return err
		}
		for i, e := range events {
			inserted, err := w.insert(ctx, e)
			if err != nil {
				return err
			}
			if inserted {
				results[i] = store.InsertResult{EventID: e.ID}
				continue
			}
			id := e.ID
			if err := findEvent.QueryRowContext(ctx, e.Source, e.Key).Scan(&id); err != nil {
				return fmt.Errorf("find duplicate event: %w", err)
			}
			results[i] = store.InsertResult{EventID: id, Duplicate: true}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// eventWriter stores new events, with their lineage and runs, in one
// transaction: the group commit and a poll's page commit share it.
type eventWriter struct {
	tx               *sql.Tx
	insEvent, insRun *sql.Stmt
}

func (s *Store) eventWriter(ctx context.Context, tx *sql.Tx) (eventWriter, error) {
	insEvent, err := s.stmt(ctx, tx, qInsEvent)
	if err != nil {
		return eventWriter{}, err
	}
	insRun, err := s.stmt(ctx, tx, qInsRun)
	if err != nil {
		return eventWriter{}, err
	}
	return eventWriter{tx: tx, insEvent: insEvent, insRun: insRun}, nil
}

// insert stores e with its lineage and runs unless an event with its
// (source, key) exists; it reports whether it stored it. Dedupe relies on
// the unique index, never on a prior SELECT.
func (w eventWriter) insert(ctx context.Context, e store.NewEvent) (bool, error) {
	at := micros(e.ReceivedAt)
	res, err := w.insEvent.ExecContext(ctx, e.ID, e.Source, e.Key, at, e.Payload, e.TraceParent)
	if err != nil {
		return false, fmt.Errorf("insert event: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if !e.Lineage.IsZero() {
		if err := insertLineage(ctx, w.tx, e.ID, e.Lineage); err != nil {
			return false, err
		}
	}
	for _, r := range e.Runs {
		if _, err := w.insRun.ExecContext(ctx, r.ID, e.ID, r.Flow, r.StepID, at, at, at); err != nil {
			return false, fmt.Errorf("insert run: %w", err)
		}
	}
	return true, nil
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
	where, args := eventFilter(p, "")
	const order = ` ORDER BY received_at DESC, id DESC`
	n := limit(p.Limit)
	if p.State == "" {
		return s.queryEvents(ctx, `SELECT `+eventCols+` FROM events`+where+order+` LIMIT ?`, append(args, n)...)
	}
	inIndex, ok := stateIndex[p.State]
	if !ok {
		return nil, fmt.Errorf("list events: unknown run state %q", p.State)
	}
	// A state filter has two plans, and which is fast depends on how common
	// the state is among the source's newest events:
	//  1. walk the newest events of the source off the index
	//     events_source_received_id (which holds the id: no event row is
	//     read) and keep those with a run in the state (one probe of
	//     runs_event each): cheap per event, but it would walk the whole
	//     source to find a rare state.
	//  2. walk every run in the state (the partial indexes runs_dead and
	//     runs_runnable, which hold state and event_id) and fetch its
	//     event: about twice the cost per row of plan 1, for every run in
	//     the state, whatever its source.
	// So plan 1 walks at most as many events as plan 2 would fetch (the
	// state's runs, counted off the partial index alone), then
	// gives way to plan 2: never much more than twice the cheaper plan.
	// Succeeded runs have no index (it would cost every run a write);
	// succeeded is the common state, which plan 1 finds.
	scan := -1 // no bound
	if p.State != store.RunSucceeded {
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM runs r WHERE `+inIndex+` AND r.state = '`+string(p.State)+`'`).Scan(&scan); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if scan == 0 {
			return nil, nil
		}
		scan = max(scan, 2*n)
	}
	evs, err := s.queryEvents(ctx, `SELECT `+eventCols+` FROM events WHERE id IN (
			SELECT e.id FROM (SELECT id, received_at FROM events`+where+order+` LIMIT ?) e
			WHERE EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND r.state = ?)`+order+` LIMIT ?)`+order,
		append(args, scan, p.State, n)...)
	if err != nil || len(evs) == n || scan < 0 {
		return evs, err
	}
	var seen int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM events`+where+` LIMIT ?)`, append(args, scan)...).Scan(&seen); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if seen < scan {
		return evs, nil // plan 1 saw every event
	}
	// CROSS JOIN keeps runs as the outer loop, so SQLite walks the state's
	// index rather than every event of the source; GROUP BY lists an event
	// with two runs in the state once. (source and received_at are columns
	// of events only.)
	where, args = eventFilter(p, "e.")
	return s.queryEvents(ctx, `SELECT e.id, e.source, e.key, e.received_at, e.payload, e.trace_parent
		FROM runs r CROSS JOIN events e ON e.id = r.event_id WHERE `+inIndex+` AND r.state = '`+string(p.State)+`'`+strings.TrimPrefix(where, ` WHERE 1=1`)+`
		GROUP BY e.id ORDER BY e.received_at DESC, e.id DESC LIMIT ?`,
		append(args, n)...)
}

// eventFilter returns the WHERE clause of p's Source and Before on the
// events table (its columns prefixed with qual, as "e.") and its arguments.
func eventFilter(p store.ListEventsParams, qual string) (string, []any) {
	where, args := ` WHERE 1=1`, []any{}
	if p.Source != "" {
		where += ` AND ` + qual + `source = ?`
		args = append(args, p.Source)
	}
	switch {
	case p.Before.IsZero():
	case p.BeforeID != "":
		// A row value: SQLite walks (source, received_at, id) from there.
		where += ` AND (` + qual + `received_at, ` + qual + `id) < (?, ?)`
		args = append(args, micros(p.Before), p.BeforeID)
	default:
		where += ` AND ` + qual + `received_at < ?`
		args = append(args, micros(p.Before))
	}
	return where, args
}

// stateIndex holds, for each state, the WHERE term of the partial index
// holding its runs (r.state = 'dead' for runs_dead), written into the query
// as a literal: SQLite uses a partial index only when the query repeats the
// index's own term, and a bound parameter never matches it. (runnable's
// unqualified state is the run's: events has no such column.)
var stateIndex = map[store.RunState]string{
	store.RunPending:   runnable,
	store.RunRetrying:  runnable,
	store.RunRunning:   runnable,
	store.RunDead:      `r.state = 'dead'`,
	store.RunSucceeded: `r.state = 'succeeded'`, // no index: see ListEvents
}

func (s *Store) queryEvents(ctx context.Context, q string, args ...any) ([]store.Event, error) {
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
