package postgres

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

const runCols = `r.id, r.event_id, e.source, r.flow, r.generation, r.state, r.step, r.step_id, r.attempt,
	r.due_at, r.last_error, r.created_at, r.updated_at`

func scanRun(row pgx.Row, extra ...any) (store.Run, error) {
	var r store.Run
	dest := append([]any{&r.ID, &r.EventID, &r.Source, &r.Flow, &r.Generation, &r.State, &r.Step, &r.StepID,
		&r.Attempt, &r.DueAt, &r.LastError, &r.CreatedAt, &r.UpdatedAt}, extra...)
	err := row.Scan(dest...)
	r.DueAt, r.CreatedAt, r.UpdatedAt = r.DueAt.UTC(), r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, err
}

// FinishAndClaim applies attempt results, then claims runnable runs, in one
// transaction and one round trip: the statements go as one pipelined batch,
// which PostgreSQL runs as one implicit transaction (see queueFinish and
// queueClaim). It used to be five round trips or more (BEGIN, the results,
// the claim, the claimed runs' events, COMMIT).
//
// The claim comes last and never waits for a lock (SKIP LOCKED), and the
// finishes lock in id order, so two such transactions cannot deadlock.
func (s *Store) FinishAndClaim(ctx context.Context, ps []store.FinishParams, c *store.ClaimParams) ([]error, []store.ClaimedRun, error) {
	results := make([]error, len(ps))
	b := &pgx.Batch{}
	readFinish := queueFinish(b, ps, results)
	claiming := c != nil && c.Limit > 0
	if claiming {
		queueClaim(b, *c)
	}
	if b.Len() == 0 {
		return results, nil, nil
	}
	br := s.pool.SendBatch(ctx, b)
	err := readFinish(br)
	var claimed []store.ClaimedRun
	if err == nil && claiming {
		claimed, err = readClaim(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, refused(err)
	}
	return results, claimed, nil
}

// queueClaim adds the claim to a batch. FOR UPDATE SKIP LOCKED lets every
// node claim at once without waiting on rows another node is claiming; the
// partial index runs_runnable keeps the scan to claimable rows. The claimed
// runs' events are looked up one by one by key: OFFSET 0 keeps each lookup a
// subquery of its own, which PostgreSQL cannot turn into a hash join over a
// scan of the table. It chose that join on tables it had not analyzed yet
// (a new database, the bench's fresh schemas), and kept it as the prepared
// statement's generic plan while the tables grew. The checkpoints of runs
// resumed past their first step come with them, in the same statement: read
// after the commit, a failed read would have reported as failed a cycle that
// had committed.
func queueClaim(b *pgx.Batch, p store.ClaimParams) {
	b.Queue(`WITH r AS (
			UPDATE runs SET state = 'running', lease_token = $1, due_at = $2, attempt = attempt + 1, updated_at = $3
			WHERE id IN (SELECT id FROM runs
				WHERE state IN ('pending', 'retrying', 'running') AND due_at <= $3
				ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
			RETURNING *
		)
		SELECT `+runCols+`, e.key, e.received_at, e.payload, e.trace_parent,
			coalesce(l.outcome, ''), coalesce(l.hop, 0), coalesce(l.chain, ''), coalesce(l.parent_run, ''),
			cp.indexes, cp.step_ids, cp.outputs
		FROM r JOIN LATERAL (SELECT * FROM events e WHERE e.id = r.event_id OFFSET 0) e ON true
		LEFT JOIN LATERAL (SELECT * FROM event_lineage l WHERE l.event_id = r.event_id OFFSET 0) l ON true
		CROSS JOIN LATERAL (SELECT array_agg(s.step_index ORDER BY s.step_index) AS indexes,
				array_agg(s.step_id ORDER BY s.step_index) AS step_ids, array_agg(s.output ORDER BY s.step_index) AS outputs
			FROM run_steps s WHERE s.run_id = r.id AND r.step > 0) cp
		ORDER BY r.created_at, r.id`, p.Token, p.LeaseUntil, p.Now, p.Limit)
}

// readClaim reads the claim's answer from a batch's results.
func readClaim(br pgx.BatchResults) ([]store.ClaimedRun, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ClaimedRun, error) {
		var c store.ClaimedRun
		var indexes []int32
		var stepIDs []string
		var outputs [][]byte
		var err error
		c.Run, err = scanRun(row, &c.Event.Key, &c.Event.ReceivedAt, &c.Event.Payload, &c.Event.TraceParent,
			&c.Lineage.Outcome, &c.Lineage.Hop, &c.Lineage.Chain, &c.Lineage.ParentRun, &indexes, &stepIDs, &outputs)
		c.Event.ID, c.Event.Source, c.Event.ReceivedAt = c.Run.EventID, c.Run.Source, c.Event.ReceivedAt.UTC()
		for i := range indexes {
			c.Outputs = append(c.Outputs, store.StepOutput{Index: int(indexes[i]), StepID: stepIDs[i], Output: outputs[i]})
		}
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim runs: %w", err)
	}
	return out, nil
}

// ExtendLeases renews the leases still held by p.Token.
func (s *Store) ExtendLeases(ctx context.Context, p store.ExtendParams) error {
	if len(p.RunIDs) == 0 {
		return nil
	}
	// Rows are locked in id order (see queueFinish).
	_, err := s.pool.Exec(ctx, `UPDATE runs SET due_at = $1, updated_at = $2
		WHERE id IN (SELECT id FROM runs WHERE id = ANY($4) AND lease_token = $3 AND state = 'running' ORDER BY id FOR UPDATE)`,
		p.LeaseUntil, p.Now, p.Token, p.RunIDs)
	if err != nil {
		return fmt.Errorf("extend leases: %w", err)
	}
	return nil
}

// queueFinish adds attempt results to a batch, three statements per
// attempt at most, each on one run by its key (their plans cannot turn into
// scans whatever the planner's statistics), and returns the function that
// reads their answers, setting results[i] to ErrLeaseLost for each run
// whose lease was lost. The checkpoint is written only while the lease is
// held (checked before the run row changes).
func queueFinish(b *pgx.Batch, ps []store.FinishParams, results []error) func(pgx.BatchResults) error {
	// Runs are updated in id order, as ExtendLeases locks them, so a finish
	// batch and a renewal (or two finish batches) cannot deadlock. Both are
	// byte order: runs.id has collation "C" (migration 0011), whatever the
	// database's default.
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ps[order[a]].RunID < ps[order[b]].RunID })
	for _, i := range order {
		p := ps[i]
		a := p.Attempt
		if f := p.Fingerprint; f != nil {
			queueFingerprint(b, *f)
		}
		if p.DropFingerprint != "" {
			queueDropFingerprint(b, p.DropFingerprint)
		}
		if !p.Hold { // a held run was not tried: no attempt row
			b.Queue(`INSERT INTO attempts (run_id, step_index, step_id, system, number, outcome, status, error,
				duration_us, response, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				p.RunID, a.StepIndex, a.StepID, a.System, a.Number, a.Outcome, a.Status, store.Text(a.Error),
				a.Duration.Microseconds(), a.Response, a.StartedAt)
		}
		if p.Output != nil {
			b.Queue(`INSERT INTO run_steps (run_id, step_index, step_id, output, completed_at)
				SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
					SELECT 1 FROM runs WHERE id = $1 AND lease_token = $6 AND state = 'running')
				ON CONFLICT (run_id, step_index) DO UPDATE SET output = excluded.output, completed_at = excluded.completed_at`,
				p.RunID, a.StepIndex, a.StepID, p.Output, p.Now, p.Token)
		}
		b.Queue(`UPDATE runs SET state = $1, step = $2, step_id = $3, attempt = $4, due_at = $5, last_error = $6,
				updated_at = $7, lease_token = CASE WHEN $1 = 'running' THEN lease_token ELSE '' END, held_system = $10
			WHERE id = $8 AND lease_token = $9 AND state = 'running'`,
			p.State, p.Step, p.StepID, p.RunAttempt, p.DueAt, store.Text(p.LastError), p.Now, p.RunID, p.Token, p.HeldFor)
	}
	return func(br pgx.BatchResults) error {
		for _, i := range order {
			p := ps[i]
			if p.Fingerprint != nil {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("save fingerprint: %w", err)
				}
			}
			if p.DropFingerprint != "" {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("drop fingerprint: %w", err)
				}
			}
			if !p.Hold {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("record attempt: %w", err)
				}
			}
			if p.Output != nil {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("checkpoint step: %w", err)
				}
			}
			tag, err := br.Exec()
			if err != nil {
				return fmt.Errorf("update run: %w", err)
			}
			if tag.RowsAffected() == 0 {
				results[i] = fmt.Errorf("run %s: %w", p.RunID, store.ErrLeaseLost)
			}
		}
		return nil
	}
}

// ReleaseLeases makes all running runs claimable at once. With several
// nodes sharing the database this would steal live leases; only a
// single-node deployment calls it.
func (s *Store) ReleaseLeases(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE runs SET due_at = $1, lease_token = '', updated_at = $1 WHERE state = 'running'`, now)
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// GetRun returns one run.
func (s *Store) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runCols+` FROM runs r JOIN events e ON e.id = r.event_id WHERE r.id = $1`, id))
	if isNoRows(err) {
		return r, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
	}
	return r, err
}

// ListRuns returns runs newest first.
func (s *Store) ListRuns(ctx context.Context, p store.ListRunsParams) ([]store.Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+runCols+` FROM runs r JOIN events e ON e.id = r.event_id
		WHERE ($1 = '' OR r.event_id = $1) AND ($2 = '' OR r.flow = $2) AND ($3 = '' OR r.state = $3)
		ORDER BY r.created_at DESC, r.id DESC LIMIT $4`, p.EventID, p.Flow, string(p.State), limit(p.Limit))
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Run, error) { return scanRun(r) })
}

// ListAttempts returns a run's attempts, oldest first.
func (s *Store) ListAttempts(ctx context.Context, runID string) ([]store.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, run_id, step_index, step_id, system, number, outcome, status, error,
		duration_us, response, started_at FROM attempts WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Attempt, error) {
		var a store.Attempt
		var dur int64
		err := r.Scan(&a.ID, &a.RunID, &a.StepIndex, &a.StepID, &a.System, &a.Number, &a.Outcome, &a.Status,
			&a.Error, &dur, &a.Response, &a.StartedAt)
		a.Duration, a.StartedAt = time.Duration(dur)*time.Microsecond, a.StartedAt.UTC()
		return a, err
	})
}

// ListOutputs returns a run's checkpoints in step order.
func (s *Store) ListOutputs(ctx context.Context, runID string) ([]store.StepOutput, error) {
	rows, err := s.pool.Query(ctx, `SELECT step_index, step_id, output FROM run_steps WHERE run_id = $1 ORDER BY step_index`, runID)
	if err != nil {
		return nil, fmt.Errorf("list outputs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.StepOutput, error) {
		var o store.StepOutput
		err := r.Scan(&o.Index, &o.StepID, &o.Output)
		return o, err
	})
}

// ReplayEvent creates new runs, one generation above the highest of each flow.
func (s *Store) ReplayEvent(ctx context.Context, p store.ReplayParams) ([]store.Run, error) {
	var ids []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the event row so two concurrent replays get distinct generations.
		var id string
		if err := tx.QueryRow(ctx, `SELECT id FROM events WHERE id = $1 FOR UPDATE`, p.EventID).Scan(&id); err != nil {
			if isNoRows(err) {
				return fmt.Errorf("event %s: %w", p.EventID, store.ErrNotFound)
			}
			return err
		}
		for _, r := range p.Runs {
			if _, err := tx.Exec(ctx, `INSERT INTO runs (id, event_id, flow, generation, state, step_id, due_at, created_at, updated_at)
				VALUES ($1, $2, $3, (SELECT coalesce(max(generation), -1) + 1 FROM runs WHERE event_id = $2 AND flow = $3),
				'pending', $4, $5, $5, $5)`, r.ID, p.EventID, r.Flow, r.StepID, p.Now); err != nil {
				return fmt.Errorf("insert replay run: %w", err)
			}
			ids = append(ids, r.ID)
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, channel)
		return err
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

// RetryRun re-queues a dead run at its failed step. It holds the run's
// event's row lock while it does, so that retention, which deletes the
// events it has locked and decides what to delete only once it holds their
// locks (see DeleteExpired), cannot cascade the run away after the retry
// made it pending: either retention got the lock first, and then the event
// and the run are gone and the retry reports ErrNotFound, or it passes the
// event over. FOR KEY SHARE is the weakest lock that does (the one a foreign
// key check takes, which only a DELETE or a FOR UPDATE conflicts with), so
// retries of an event's runs do not wait for each other.
func (s *Store) RetryRun(ctx context.Context, p store.RetryParams) (store.Run, error) {
	var retried bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A wait for retention's lock ends with no row when it deleted the
		// event: the re-check after the wait finds the row gone.
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM events WHERE id = (SELECT event_id FROM runs WHERE id = $1) FOR KEY SHARE`,
			p.RunID).Scan(&one)
		if isNoRows(err) {
			return fmt.Errorf("run %s: %w", p.RunID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("lock event of run %s: %w", p.RunID, err)
		}
		tag, err := tx.Exec(ctx, `WITH u AS (UPDATE runs SET state = 'pending', attempt = 0, due_at = $1, updated_at = $1, lease_token = ''
			WHERE id = $2 AND state = 'dead' RETURNING id) SELECT pg_notify($3, '') FROM u`, p.Now, p.RunID, channel)
		if err != nil {
			return fmt.Errorf("retry run: %w", err)
		}
		retried = tag.RowsAffected() > 0
		return nil
	})
	if err != nil {
		return store.Run{}, err
	}
	r, err := s.GetRun(ctx, p.RunID)
	if err != nil || retried {
		return r, err
	}
	return r, fmt.Errorf("run %s is %s, not dead: %w", p.RunID, r.State, store.ErrConflict)
}
