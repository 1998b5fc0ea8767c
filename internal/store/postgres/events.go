package postgres

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// InsertEvents stores a batch with two statements over arrays (unnest), one
// round trip each whatever the batch size. Dedupe is the unique index: a
// concurrent transaction inserting the same key on another node makes this
// INSERT wait for it and then skip the row, never both insert.
func (s *Store) InsertEvents(ctx context.Context, events []store.NewEvent) ([]store.InsertResult, error) {
	n := len(events)
	ids, sources, keys := make([]string, n), make([]string, n), make([]string, n)
	received, payloads, parents := make([]time.Time, n), make([][]byte, n), make([]string, n)
	// Rows go in (source, key) order: two batches (parallel commits, other
	// nodes) that share keys then take the unique index's locks in the same
	// order and cannot deadlock.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ea, eb := events[order[a]], events[order[b]]
		return ea.Source < eb.Source || ea.Source == eb.Source && ea.Key < eb.Key
	})
	for j, i := range order {
		e := events[i]
		ids[j], sources[j], keys[j], received[j], payloads[j], parents[j] = e.ID, e.Source, e.Key, e.ReceivedAt, e.Payload, e.TraceParent
	}
	results := make([]store.InsertResult, n)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO events (id, source, key, received_at, payload, trace_parent)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[])
			ON CONFLICT (source, key) DO NOTHING RETURNING id`, ids, sources, keys, received, payloads, parents)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		isNew := make(map[string]bool, len(inserted))
		for _, id := range inserted {
			isNew[id] = true
		}
		// The stored ID of every key, for the duplicates (of older events,
		// of concurrent batches, or of an earlier item in this batch).
		stored := map[[2]string]string{}
		var dupSources, dupKeys []string
		for _, e := range events {
			if isNew[e.ID] {
				stored[[2]string{e.Source, e.Key}] = e.ID
			}
		}
		for _, e := range events {
			if _, ok := stored[[2]string{e.Source, e.Key}]; !ok {
				dupSources, dupKeys = append(dupSources, e.Source), append(dupKeys, e.Key)
			}
		}
		if len(dupKeys) > 0 {
			rows, err := tx.Query(ctx, `SELECT e.source, e.key, e.id FROM events e
				JOIN unnest($1::text[], $2::text[]) AS d(source, key) ON e.source = d.source AND e.key = d.key`, dupSources, dupKeys)
			if err != nil {
				return fmt.Errorf("find duplicate events: %w", err)
			}
			var src, key, id string
			_, err = pgx.ForEachRow(rows, []any{&src, &key, &id}, func() error {
				stored[[2]string{src, key}] = id
				return nil
			})
			if err != nil {
				return fmt.Errorf("find duplicate events: %w", err)
			}
		}
		var runIDs, runEvents, runFlows, runSteps []string
		var runAt []time.Time
		for i, e := range events {
			id := stored[[2]string{e.Source, e.Key}]
			if id == "" {
				return fmt.Errorf("event %s/%s neither inserted nor found", e.Source, e.Key)
			}
			fresh := isNew[e.ID] // IDs are unique per item: only the first of a key was inserted
			results[i] = store.InsertResult{EventID: id, Duplicate: !fresh}
			if !fresh {
				continue
			}
			for _, r := range e.Runs {
				runIDs, runEvents, runFlows, runSteps = append(runIDs, r.ID), append(runEvents, id), append(runFlows, r.Flow), append(runSteps, r.StepID)
				runAt = append(runAt, e.ReceivedAt)
			}
		}
		if err := insertLineage(ctx, tx, events, results); err != nil {
			return err
		}
		if len(runIDs) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
			SELECT r.id, r.event_id, r.flow, 'pending', r.step_id, r.at, r.at, r.at
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS r(id, event_id, flow, step_id, at)`,
			runIDs, runEvents, runFlows, runSteps, runAt); err != nil {
			return fmt.Errorf("insert runs: %w", err)
		}
		// Delivered at commit, to every node's listening executor.
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, channel)
		return err
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

const eventCols = `id, source, key, received_at, payload, trace_parent`

func scanEvent(row pgx.Row) (store.Event, error) {
	var e store.Event
	err := row.Scan(&e.ID, &e.Source, &e.Key, &e.ReceivedAt, &e.Payload, &e.TraceParent)
	e.ReceivedAt = e.ReceivedAt.UTC()
	return e, err
}

// GetEvent returns one event.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM events WHERE id = $1`, id))
	if isNoRows(err) {
		return e, fmt.Errorf("event %s: %w", id, store.ErrNotFound)
	}
	return e, err
}

// ListEvents returns events newest first.
func (s *Store) ListEvents(ctx context.Context, p store.ListEventsParams) ([]store.Event, error) {
	// Built per filter rather than "($1 = '' OR source = $1)": a generic
	// plan of that form cannot use the (source, received_at, id) index.
	q, args := `SELECT `+eventCols+` FROM events e WHERE true`, []any{}
	if p.Source != "" {
		args = append(args, p.Source)
		q += fmt.Sprintf(` AND source = $%d`, len(args))
	}
	if !p.Before.IsZero() {
		args = append(args, p.Before)
		q += fmt.Sprintf(` AND received_at < $%d`, len(args))
	}
	if p.State != "" {
		if !p.State.Valid() {
			return nil, fmt.Errorf("list events: unknown run state %q", p.State)
		}
		// The state is a literal, not a parameter, so that every plan
		// (generic ones too) can use the partial index of a rare state
		// (runs_dead, runs_runnable: PostgreSQL proves state = 'retrying'
		// implies the index's IN list); the planner's statistics then
		// choose between walking the source's newest events and walking
		// the state's runs.
		q += ` AND EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND r.state = '` + string(p.State) + `')`
	}
	args = append(args, limit(p.Limit))
	q += fmt.Sprintf(` ORDER BY received_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) { return scanEvent(r) })
}

func limit(n int) int {
	if n <= 0 {
		return 100
	}
	return n
}
