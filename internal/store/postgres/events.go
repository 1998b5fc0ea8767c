package postgres

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// InsertEvents stores a batch in one round trip, whatever its size: one
// statement inserts the events and, for those it inserted, their runs and
// lineage, over arrays (unnest); a second reads the stored id of each
// duplicate; a third wakes the executors (NOTIFY is delivered at commit).
// They go as one pipelined batch, which PostgreSQL runs as one implicit
// transaction. It used to take six round trips (BEGIN, the events, the
// duplicates, the runs, NOTIFY, COMMIT), each also a statement's fixed cost
// in the server, which shares the machine's CPU with the node.
//
// Dedupe is the unique index: a concurrent transaction inserting the same
// key on another node makes the INSERT wait for it and then skip the row,
// never both insert. The duplicates are read by a statement of their own
// because that row committed after the INSERT's snapshot: the next
// statement's snapshot sees it. Each is looked up by its key (OFFSET 0:
// see queueClaim).
func (s *Store) InsertEvents(ctx context.Context, events []store.NewEvent) ([]store.InsertResult, error) {
	n := len(events)
	ids, sources, keys := make([]string, n), make([]string, n), make([]string, n)
	received, payloads, parents := make([]time.Time, n), make([][]byte, n), make([]string, n)
	var runIDs, runEvents, runFlows, runSteps []string
	var runAt []time.Time
	var lin lineageRows
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
		// Every event's runs and lineage are sent; the statement keeps
		// those of the events it inserts.
		for _, r := range e.Runs {
			runIDs, runEvents, runFlows, runSteps = append(runIDs, r.ID), append(runEvents, e.ID), append(runFlows, r.Flow), append(runSteps, r.StepID)
			runAt = append(runAt, e.ReceivedAt)
		}
		lin.add(e.ID, e.Lineage)
	}
	b := &pgx.Batch{}
	b.Queue(`WITH inserted AS (
			INSERT INTO events (id, source, key, received_at, payload, trace_parent)
			SELECT id, source, key, received_at, payload, trace_parent
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[], $6::text[])
				WITH ORDINALITY AS i(id, source, key, received_at, payload, trace_parent, n)
			ORDER BY n
			ON CONFLICT (source, key) DO NOTHING RETURNING id
		), new_runs AS (
			INSERT INTO runs (id, event_id, flow, state, step_id, due_at, created_at, updated_at)
			SELECT r.id, r.event_id, r.flow, 'pending', r.step_id, r.at, r.at, r.at
			FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[]) AS r(id, event_id, flow, step_id, at)
			WHERE r.event_id IN (SELECT id FROM inserted)
		), new_lineage AS (
			INSERT INTO event_lineage (event_id, outcome, hop, chain, parent_run)
			SELECT l.* FROM unnest($12::text[], $13::text[], $14::int[], $15::text[], $16::text[])
				AS l(event_id, outcome, hop, chain, parent_run)
			WHERE l.event_id IN (SELECT id FROM inserted)
		)
		SELECT id FROM inserted`,
		ids, sources, keys, received, payloads, parents,
		runIDs, runEvents, runFlows, runSteps, runAt,
		lin.ids, lin.outcomes, lin.hops, lin.chains, lin.parents)
	// A key stored under another id than its item's is a duplicate: of an
	// older event, of a concurrent batch, or of an earlier item here.
	b.Queue(`SELECT e.id, i.source, i.key FROM unnest($1::text[], $2::text[], $3::text[]) AS i(id, source, key)
		JOIN LATERAL (SELECT id FROM events e WHERE e.source = i.source AND e.key = i.key OFFSET 0) e ON true
		WHERE e.id <> i.id`, ids, sources, keys)
	if len(runIDs) > 0 {
		// Also for a batch of duplicates only: that costs the executors a
		// claim that finds nothing.
		b.Queue(`SELECT pg_notify($1, '')`, channel)
	}
	isNew := make(map[string]bool, n)
	stored := make(map[[2]string]string) // the duplicates' keys
	br := s.pool.SendBatch(ctx, b)
	err := readInsert(br, isNew, stored)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, refused(err)
	}
	results := make([]store.InsertResult, n)
	for i, e := range events {
		if isNew[e.ID] { // IDs are unique per item: only the first of a key was inserted
			results[i] = store.InsertResult{EventID: e.ID}
			continue
		}
		id, ok := stored[[2]string{e.Source, e.Key}]
		if !ok {
			return nil, fmt.Errorf("event %s/%s neither inserted nor found", e.Source, e.Key)
		}
		results[i] = store.InsertResult{EventID: id, Duplicate: true}
	}
	return results, nil
}

// readInsert reads InsertEvents' answers: the ids it inserted, and the
// stored id of each duplicate's key.
func readInsert(br pgx.BatchResults, isNew map[string]bool, stored map[[2]string]string) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	var id, src, key string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		isNew[id] = true
		return nil
	}); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return fmt.Errorf("find duplicate events: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&id, &src, &key}, func() error {
		stored[[2]string{src, key}] = id
		return nil
	}); err != nil {
		return fmt.Errorf("find duplicate events: %w", err)
	}
	return nil
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
	n := limit(p.Limit)
	if p.State == "" || p.State == store.RunSucceeded {
		// Succeeded runs have no index (it would cost every run a write);
		// succeeded is the common state, which the planner's walk of the
		// source's newest events finds at once.
		return s.listEvents(ctx, p, n)
	}
	if !p.State.Valid() {
		return nil, fmt.Errorf("list events: unknown run state %q", p.State)
	}
	// A rare state has two plans, and PostgreSQL cannot pick the cheaper
	// one: that depends on where the state's runs fall among the source's
	// events, which its statistics do not know. Both start from the event
	// ids of the state's runs, read once off the partial index (runs_dead,
	// runs_runnable).
	//  1. walk the newest events of the source off events_source_received_id
	//     and keep those whose id is in a hash of those ids. It finds the
	//     state quickly when it is among the newest events, but would walk
	//     the whole source to find one that is not.
	//  2. fetch the event of each id, whatever its source or age, and keep
	//     the newest.
	// So plan 1 walks at most walkPerRun events per id, about what plan 2
	// costs, then gives way to plan 2 unless a count of the events it
	// walked shows it saw them all (a small source). At worst that is
	// about three times the cheaper plan.
	rows, err := s.pool.Query(ctx, `SELECT r.event_id FROM runs r WHERE `+inState(p.State)+` LIMIT $1`, maxHashedRuns+1)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if len(ids) > maxHashedRuns {
		return s.listEvents(ctx, p, n) // not a rare state
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // an event with two runs in the state is listed once
	// With no more ids than the page, plan 2 is the cheaper at once.
	if len(ids) > n {
		scan := walkPerRun * len(ids)
		evs, err := s.walkNewest(ctx, p, ids, n, scan)
		if err != nil || len(evs) == n {
			return evs, err
		}
		var args params
		var seen int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (`+newestOf(p, scan, &args)+`) w`, args...).Scan(&seen); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if seen < scan {
			return evs, nil // plan 1 saw every event
		}
	}
	return s.fetchEvents(ctx, p, ids, n)
}

// walkPerRun bounds plan 1's walk of ListEvents: about the ratio of plan 2's
// cost per id (its event fetched, 2 µs) to plan 1's per event walked (0.5
// µs), measured on 1,000,000 events in memory. When the table is not in
// memory, plan 2 suffers more: it reads events of any age, plan 1 the newest.
const walkPerRun = 4

// maxHashedRuns bounds the runs whose event ids ListEvents reads and plan 1
// hashes. PostgreSQL hashes the ids only if it expects the hash to fit in
// hash_mem (8 MB by default); it reckons 50,000 of them at under 2 MB.
// Unhashed, the filter would scan every id for every event walked.
const maxHashedRuns = 50_000

// listEvents is one query, whose plan PostgreSQL chooses.
func (s *Store) listEvents(ctx context.Context, p store.ListEventsParams, n int) ([]store.Event, error) {
	var args params
	q := `SELECT ` + eventCols + ` FROM events e` + eventFilter(p, &args)
	if p.State != "" {
		q += ` AND EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND ` + inState(p.State) + `)`
	}
	return s.queryEvents(ctx, q+newestFirst+` LIMIT `+args.add(n), args...)
}

// walkNewest is plan 1 of ListEvents: the newest n of the first scan events
// of p's source whose id is in ids.
func (s *Store) walkNewest(ctx context.Context, p store.ListEventsParams, ids []string, n, scan int) ([]store.Event, error) {
	var args params
	walk := newestOf(p, scan, &args)
	// IS TRUE keeps the IN a filter, which PostgreSQL evaluates with a hash
	// of the ids, in the walk's order: as a semi-join it would not keep
	// that order, nor stop at the page's last event.
	return s.queryEvents(ctx, `SELECT `+eventCols+` FROM events WHERE id IN (
			SELECT id FROM (`+walk+`) w WHERE (id IN (SELECT unnest(`+args.add(ids)+`::text[]))) IS TRUE
			ORDER BY `+walkOrder(p)+` LIMIT `+args.add(n)+`)`+newestFirst, args...)
}

// newestOf is the query of the ids of p's source's newest scan events.
func newestOf(p store.ListEventsParams, scan int, args *params) string {
	q := `SELECT id, received_at FROM events WHERE true`
	if p.Source != "" {
		q = `SELECT id, source, received_at FROM events WHERE source = ANY(` + args.add([]string{p.Source}) + `)`
	}
	return q + before(p, args) + ` ORDER BY ` + walkOrder(p) + ` LIMIT ` + args.add(scan)
}

// walkOrder is newestOf's order, newest first. A source leads it, and
// newestOf matches it with = ANY, not =: with source = $1 the planner drops
// the constant source from the order and may walk events_received instead,
// skipping the other sources' events (it prices reading the table in the
// order of an index led by source as random reads): four times the rows
// with four sources, twice the time.
func walkOrder(p store.ListEventsParams) string {
	if p.Source != "" {
		return `source DESC, received_at DESC, id DESC`
	}
	return `received_at DESC, id DESC`
}

// fetchEvents is plan 2 of ListEvents: the newest n events of ids that
// match p. LIMIT 1 (an id has one event) keeps the lateral subquery from
// being merged into a join that PostgreSQL may run as a scan of every event
// of the source.
func (s *Store) fetchEvents(ctx context.Context, p store.ListEventsParams, ids []string, n int) ([]store.Event, error) {
	var args params
	return s.queryEvents(ctx, `SELECT e.* FROM unnest(`+args.add(ids)+`::text[]) AS r(event_id)
		CROSS JOIN LATERAL (SELECT `+eventCols+` FROM events`+eventFilter(p, &args)+` AND id = r.event_id LIMIT 1) e`+
		newestFirst+` LIMIT `+args.add(n), args...)
}

const newestFirst = ` ORDER BY received_at DESC, id DESC`

// inState is the condition on runs r of being in state, with the state a
// literal, not a parameter, so that every plan (generic ones too) can use
// the partial index of a rare state (runs_dead, runs_runnable: PostgreSQL
// proves state = 'retrying' implies the index's IN list).
func inState(state store.RunState) string { return `r.state = '` + string(state) + `'` }

// eventFilter returns the WHERE clause of p's Source and paging. It is built
// per filter rather than with optional terms (source = $1 OR $1 is empty):
// a generic plan of that form cannot use the (source, received_at, id) index.
func eventFilter(p store.ListEventsParams, args *params) string {
	w := ` WHERE true`
	if p.Source != "" {
		w += ` AND source = ` + args.add(p.Source)
	}
	return w + before(p, args)
}

// before is the paging term of p: events received before p.Before or, with
// p.BeforeID, at it with a smaller id (a row comparison, which walks the
// (source, received_at, id) index from there).
func before(p store.ListEventsParams, args *params) string {
	switch {
	case p.Before.IsZero():
		return ""
	case p.BeforeID != "":
		return ` AND (received_at, id) < (` + args.add(p.Before) + `, ` + args.add(p.BeforeID) + `)`
	default:
		return ` AND received_at < ` + args.add(p.Before)
	}
}

// params are a query's arguments; add appends one and returns its
// placeholder.
type params []any

func (a *params) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}

func (s *Store) queryEvents(ctx context.Context, q string, args ...any) ([]store.Event, error) {
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
