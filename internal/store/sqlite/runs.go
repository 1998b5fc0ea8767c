package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// runnable is the predicate of the partial index runs_runnable, spelled as
// the index spells it (migration 0013): SQLite reads a partial index for a
// query only when the query's WHERE repeats the index's term, or a term that
// implies it (state = 'retrying' implies this OR). It is not written as an
// IN list: SQLite builds a temporary b-tree for a list of three constants
// at every execution (see 0013).
const runnable = `(state = 'pending' OR state = 'retrying' OR state = 'running')`

// Statements prepared once at Open (see Store.stmt).
const (
	// The limit is written "+?": SQLite's planner reads a bare "LIMIT ?"
	// parameter's value and marks the statement to be prepared again
	// whenever that value changes, which for a claim (the number of free
	// workers) is nearly every call; the unary plus keeps the plan
	// independent of it (the plan is the runnable index's order anyway).
	qClaim = `UPDATE runs SET state = 'running', lease_token = ?, due_at = ?,
				attempt = attempt + 1, updated_at = ?
			WHERE id IN (SELECT id FROM runs
				WHERE ` + runnable + ` AND due_at <= ?
				ORDER BY due_at LIMIT +?)
			RETURNING id`
	qLoad = `SELECT ` + runCols + `, e.key, e.received_at, e.payload, e.trace_parent,
			coalesce(l.outcome, ''), coalesce(l.hop, 0), coalesce(l.chain, ''), coalesce(l.parent_run, '')
		FROM runs r JOIN events e ON e.id = r.event_id LEFT JOIN event_lineage l ON l.event_id = e.id WHERE r.id IN (SELECT value FROM json_each(?)) ORDER BY r.created_at, r.id`
	qLoadOuts = `SELECT run_id, step_index, step_id, output FROM run_steps
		WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY run_id, step_index`
	qInsAttempt = `INSERT INTO attempts (run_id, step_index, step_id, system, number, outcome,
				status, error, duration_us, response, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qUpdRun = `UPDATE runs SET state = ?, step = ?, step_id = ?, attempt = ?, due_at = ?,
				last_error = ?, updated_at = ?, lease_token = CASE WHEN ? = 'running' THEN lease_token ELSE '' END,
				held_system = ?
			WHERE id = ? AND lease_token = ? AND state = 'running'`
	qInsStep = `INSERT INTO run_steps (run_id, step_index, step_id, output, completed_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step_index) DO UPDATE SET output = excluded.output,
				completed_at = excluded.completed_at`
)

const runCols = `r.id, r.event_id, e.source, r.flow, r.generation, r.state, r.step, r.step_id, r.attempt,
	r.due_at, r.last_error, r.created_at, r.updated_at`

func scanRun(row interface{ Scan(...any) error }) (store.Run, error) {
	var r store.Run
	var due, created, updated int64
	err := row.Scan(&r.ID, &r.EventID, &r.Source, &r.Flow, &r.Generation, &r.State, &r.Step, &r.StepID,
		&r.Attempt, &due, &r.LastError, &created, &updated)
	r.DueAt, r.CreatedAt, r.UpdatedAt = fromMicros(due), fromMicros(created), fromMicros(updated)
	return r, err
}

// FinishAndClaim applies attempt results, then claims runnable runs, in one
// transaction: on the single writer one commit (and one fsync) serves both
// halves of an executor's cycle.
func (s *Store) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	results := make([]error, len(ps))
	var claimed []store.ClaimedRun
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := s.finish(ctx, tx, ps, results); err != nil {
			return err
		}
		if c == nil || c.Limit <= 0 {
			return nil
		}
		var err error
		claimed, err = s.claim(ctx, tx, *c)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return results, claimed, nil
}

// claim leases runnable runs. The UPDATE ... WHERE id IN (SELECT ...
// LIMIT n) walks the partial index runs_runnable, so its cost does not grow
// with the number of finished runs.
func (s *Store) claim(ctx context.Context, tx *sql.Tx, p store.ClaimParams) ([]store.ClaimedRun, error) {
	claim, err := s.stmt(ctx, tx, qClaim)
	if err != nil {
		return nil, err
	}
	rows, err := claim.QueryContext(ctx, p.Token, micros(p.LeaseUntil), micros(p.Now), micros(p.Now), p.Limit)
	if err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return s.loadClaimed(ctx, tx, ids)
}

// loadClaimed reads the runs, their events and checkpoints inside the claim
// transaction, so a worker never sees a half-written run.
// The IDs travel as one JSON array (json_each), so the statement text is
// the same for any number of runs and is prepared once.
func (s *Store) loadClaimed(ctx context.Context, tx *sql.Tx, ids []string) ([]store.ClaimedRun, error) {
	idList, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	load, err := s.stmt(ctx, tx, qLoad)
	if err != nil {
		return nil, err
	}
	rows, err := load.QueryContext(ctx, string(idList))
	if err != nil {
		return nil, fmt.Errorf("load claimed runs: %w", err)
	}
	defer rows.Close()
	var out []store.ClaimedRun
	index := map[string]int{}
	for rows.Next() {
		var c store.ClaimedRun
		var due, created, updated, received int64
		r := &c.Run
		if err := rows.Scan(&r.ID, &r.EventID, &r.Source, &r.Flow, &r.Generation, &r.State, &r.Step, &r.StepID,
			&r.Attempt, &due, &r.LastError, &created, &updated, &c.Event.Key, &received, &c.Event.Payload, &c.Event.TraceParent,
			&c.Lineage.Outcome, &c.Lineage.Hop, &c.Lineage.Chain, &c.Lineage.ParentRun); err != nil {
			return nil, err
		}
		r.DueAt, r.CreatedAt, r.UpdatedAt = fromMicros(due), fromMicros(created), fromMicros(updated)
		c.Event.ID, c.Event.Source, c.Event.ReceivedAt = r.EventID, r.Source, fromMicros(received)
		index[r.ID] = len(out)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Runs at their first step have no checkpoints: most claims skip the
	// second query.
	resumed := false
	for _, c := range out {
		resumed = resumed || c.Run.Step > 0
	}
	if !resumed {
		return out, nil
	}
	loadOuts, err := s.stmt(ctx, tx, qLoadOuts)
	if err != nil {
		return nil, err
	}
	outs, err := loadOuts.QueryContext(ctx, string(idList))
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	defer outs.Close()
	for outs.Next() {
		var runID string
		var o store.StepOutput
		if err := outs.Scan(&runID, &o.Index, &o.StepID, &o.Output); err != nil {
			return nil, err
		}
		c := &out[index[runID]]
		c.Outputs = append(c.Outputs, o)
	}
	return out, outs.Err()
}

// ExtendLeases renews the leases still held by p.Token.
func (s *Store) ExtendLeases(ctx context.Context, p store.ExtendParams) error {
	if len(p.RunIDs) == 0 {
		return nil
	}
	args := append([]any{micros(p.LeaseUntil), micros(p.Now), p.Token}, anys(p.RunIDs)...)
	_, err := s.exec(ctx, `UPDATE runs SET due_at = ?, updated_at = ?
		WHERE lease_token = ? AND state = 'running' AND id IN (`+placeholders(len(p.RunIDs))+`)`, args...)
	if err != nil {
		return fmt.Errorf("extend leases: %w", err)
	}
	return nil
}

// finish applies attempt results, setting results[i] to ErrLeaseLost for
// each run whose lease was lost.
func (s *Store) finish(ctx context.Context, tx *sql.Tx, ps []store.FinishParams, results []error) error {
	if len(ps) == 0 {
		return nil
	}
	insAttempt, err := s.stmt(ctx, tx, qInsAttempt)
	if err != nil {
		return err
	}
	updRun, err := s.stmt(ctx, tx, qUpdRun)
	if err != nil {
		return err
	}
	insStep, err := s.stmt(ctx, tx, qInsStep)
	if err != nil {
		return err
	}
	for i, p := range ps {
		a := p.Attempt
		if p.Fingerprint != nil {
			if err := upsertFingerprint(ctx, tx, *p.Fingerprint); err != nil {
				return err
			}
		}
		if p.DropFingerprint != "" {
			if err := dropFingerprint(ctx, tx, p.DropFingerprint); err != nil {
				return err
			}
		}
		if !p.Hold { // a held run was not tried: no attempt row
			if _, err := insAttempt.ExecContext(ctx,
				p.RunID, a.StepIndex, a.StepID, a.System, a.Number, a.Outcome, a.Status, store.Text(a.Error),
				a.Duration.Microseconds(), a.Response, micros(a.StartedAt)); err != nil {
				return fmt.Errorf("record attempt: %w", err)
			}
		}
		res, err := updRun.ExecContext(ctx,
			p.State, p.Step, p.StepID, p.RunAttempt, micros(p.DueAt), store.Text(p.LastError), micros(p.Now), p.State,
			p.HeldFor, p.RunID, p.Token)
		if err != nil {
			return fmt.Errorf("update run: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			results[i] = fmt.Errorf("run %s: %w", p.RunID, store.ErrLeaseLost)
			continue
		}
		if p.Output != nil {
			if _, err := insStep.ExecContext(ctx,
				p.RunID, a.StepIndex, a.StepID, p.Output, micros(p.Now)); err != nil {
				return fmt.Errorf("checkpoint step: %w", err)
			}
		}
	}
	return nil
}

// ReleaseLeases makes all running runs claimable at once. A running run is
// due when its lease expires, and one whose lease has expired is claimable
// already, so only the leases still live (due after now) are released and
// counted. state = 'running' implies the predicate of the partial index
// runs_runnable, so SQLite reads that index instead of every run the store
// keeps (a full scan at each start, which also filled the page cache).
func (s *Store) ReleaseLeases(ctx context.Context, now time.Time) (int, error) {
	res, err := s.exec(ctx, qReleaseLeases, micros(now))
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

const qReleaseLeases = `UPDATE runs SET due_at = ?1, lease_token = '', updated_at = ?1
		WHERE state = 'running' AND due_at > ?1`

// GetRun returns one run.
func (s *Store) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runCols+` FROM runs r JOIN events e ON e.id = r.event_id WHERE r.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
	}
	return r, err
}

// ListRuns returns runs newest first.
func (s *Store) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	q := `SELECT ` + runCols + ` FROM runs r JOIN events e ON e.id = r.event_id WHERE 1=1`
	var args []any
	if p.EventID != "" {
		q += ` AND r.event_id = ?`
		args = append(args, p.EventID)
	}
	if p.Flow != "" {
		q += ` AND r.flow = ?`
		args = append(args, p.Flow)
	}
	if p.State != "" {
		q += ` AND r.state = ?`
		args = append(args, p.State)
	}
	q += ` ORDER BY r.created_at DESC, r.id DESC LIMIT ?`
	args = append(args, limit(p.Limit))
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ListAttempts returns a run's attempts, oldest first.
func (s *Store) ListAttempts(ctx context.Context, runID string) ([]store.Attempt, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, run_id, step_index, step_id, system, number, outcome, status, error,
		duration_us, response, started_at FROM attempts WHERE run_id = ? ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	var out []store.Attempt
	for rows.Next() {
		var a store.Attempt
		var dur, started int64
		if err := rows.Scan(&a.ID, &a.RunID, &a.StepIndex, &a.StepID, &a.System, &a.Number, &a.Outcome, &a.Status,
			&a.Error, &dur, &a.Response, &started); err != nil {
			return nil, err
		}
		a.Duration, a.StartedAt = time.Duration(dur)*time.Microsecond, fromMicros(started)
		out = append(out, a)
	}
	return out, rows.Err()
}

// ListOutputs returns a run's checkpoints in step order.
func (s *Store) ListOutputs(ctx context.Context, runID string) ([]store.StepOutput, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT step_index, step_id, output FROM run_steps WHERE run_id = ? ORDER BY step_index`, runID)
	if err != nil {
		return nil, fmt.Errorf("list outputs: %w", err)
	}
	defer rows.Close()
	var out []store.StepOutput
	for rows.Next() {
		var o store.StepOutput
		if err := rows.Scan(&o.Index, &o.StepID, &o.Output); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// ReplayEvent creates new runs for an event, one generation above the
// highest existing one of each flow.
func (s *Store) ReplayEvent(ctx context.Context, p store.ReplayParams) ([]store.Run, error) {
	var ids []string
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE id = ?`, p.EventID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("event %s: %w", p.EventID, store.ErrNotFound)
		}
		at := micros(p.Now)
		for _, r := range p.Runs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO runs (id, event_id, flow, generation, state, step_id, due_at, created_at, updated_at)
				VALUES (?, ?, ?, (SELECT coalesce(max(generation), -1) + 1 FROM runs WHERE event_id = ? AND flow = ?),
				'pending', ?, ?, ?, ?)`, r.ID, p.EventID, r.Flow, p.EventID, r.Flow, r.StepID, at, at, at); err != nil {
				return fmt.Errorf("insert replay run: %w", err)
			}
			ids = append(ids, r.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]store.Run, 0, len(ids))
	for _, id := range ids {
		r, err := s.GetRun(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RetryRun re-queues a dead run at its failed step.
func (s *Store) RetryRun(ctx context.Context, p store.RetryParams) (store.Run, error) {
	res, err := s.exec(ctx, `UPDATE runs SET state = 'pending', attempt = 0, due_at = ?, updated_at = ?, lease_token = ''
		WHERE id = ? AND state = 'dead'`, micros(p.Now), micros(p.Now), p.RunID)
	if err != nil {
		return store.Run{}, fmt.Errorf("retry run: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		r, err := s.GetRun(ctx, p.RunID)
		if err != nil {
			return r, err
		}
		return r, fmt.Errorf("run %s is %s, not dead: %w", p.RunID, r.State, store.ErrConflict)
	}
	return s.GetRun(ctx, p.RunID)
}
