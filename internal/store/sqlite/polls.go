package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// Statements of a page commit, prepared once at Open (see Store.stmt).
const (
	qSeenVersion     = `SELECT version FROM poll_records WHERE source = ? AND record_id = ?`
	qRememberVersion = `INSERT INTO poll_records (source, record_id, version, seen_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (source, record_id) DO UPDATE SET version = excluded.version, seen_at = excluded.seen_at`
)

const pollCols = `source, cursor, next_run_at, last_run_at, last_ok_at, cursor_moved_at, failures, last_error, last_found`

func scanPollState(row interface{ Scan(...any) error }) (store.PollState, error) {
	var p store.PollState
	var cursor sql.NullString
	var next, last, ok, moved int64
	if err := row.Scan(&p.Source, &cursor, &next, &last, &ok, &moved, &p.Failures, &p.LastError, &p.LastFound); err != nil {
		return p, err
	}
	p.Cursor, p.HasCursor = cursor.String, cursor.Valid
	p.NextRunAt = fromMicros(next)
	p.LastRunAt, p.LastOKAt, p.CursorMovedAt = optMicros(last), optMicros(ok), optMicros(moved)
	return p, nil
}

// optMicros reads a time stored as 0 when unset.
func optMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return fromMicros(us)
}

// InitPollState inserts the state unless it exists.
func (s *Store) InitPollState(ctx context.Context, source string, next time.Time) error {
	_, err := s.exec(ctx, `INSERT INTO poll_state (source, next_run_at) VALUES (?, ?) ON CONFLICT (source) DO NOTHING`, source, micros(next))
	if err != nil {
		return fmt.Errorf("init poll state %s: %w", source, err)
	}
	return nil
}

// GetPollState returns one source's state.
func (s *Store) GetPollState(ctx context.Context, source string) (store.PollState, bool, error) {
	p, err := scanPollState(s.r.QueryRowContext(ctx, `SELECT `+pollCols+` FROM poll_state WHERE source = ?`, source))
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("get poll state %s: %w", source, err)
	}
	return p, true, nil
}

// ListPollStates returns every state by source name.
func (s *Store) ListPollStates(ctx context.Context) ([]store.PollState, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+pollCols+` FROM poll_state ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("list poll states: %w", err)
	}
	defer rows.Close()
	var out []store.PollState
	for rows.Next() {
		p, err := scanPollState(rows)
		if err != nil {
			return nil, fmt.Errorf("list poll states: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CommitPollPage stores a page and its cursor in one transaction.
func (s *Store) CommitPollPage(ctx context.Context, p store.PollPage) ([]store.PollResult, error) {
	out := make([]store.PollResult, len(p.Records))
	seenAs := cmp.Or(p.SeenAs, p.Source)
	now := micros(p.Now)
	err := s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		w, err := s.eventWriter(ctx, tx)
		if err != nil {
			return err
		}
		seenStmt, err := s.stmt(ctx, tx, qSeenVersion)
		if err != nil {
			return err
		}
		remember, err := s.stmt(ctx, tx, qRememberVersion)
		if err != nil {
			return err
		}
		for i, r := range p.Records {
			var seen string
			err := seenStmt.QueryRowContext(ctx, seenAs, r.RecordID).Scan(&seen)
			switch {
			case err == nil && seen == r.Version:
				out[i] = store.PollResult{Outcome: store.PollUnchanged}
				continue
			case err != nil && !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("read seen record: %w", err)
			}
			if _, err := remember.ExecContext(ctx, seenAs, r.RecordID, r.Version, now); err != nil {
				return fmt.Errorf("remember record: %w", err)
			}
			inserted, err := w.insert(ctx, r.Event)
			switch {
			case err != nil:
				return err
			case inserted:
				out[i] = store.PollResult{Outcome: store.PollEmitted, EventID: r.Event.ID}
			default:
				out[i] = store.PollResult{Outcome: store.PollKnown}
			}
		}
		if !p.SetCursor {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO poll_state (source, cursor, next_run_at, cursor_moved_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor,
				cursor_moved_at = CASE WHEN poll_state.cursor IS excluded.cursor THEN poll_state.cursor_moved_at ELSE excluded.cursor_moved_at END`,
			p.Source, p.Cursor, now, now)
		if err != nil {
			return fmt.Errorf("store cursor: %w", err)
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
		if _, err := s.exec(ctx, `INSERT INTO poll_state (source, next_run_at) VALUES (?, ?)
			ON CONFLICT (source) DO UPDATE SET next_run_at = excluded.next_run_at`, p.Source, micros(p.NextRunAt)); err != nil {
			return fmt.Errorf("finish skipped poll %s: %w", p.Source, err)
		}
		return nil
	}
	ok := int64(0)
	if p.Error == "" {
		ok = micros(p.Now)
	}
	_, err := s.exec(ctx, `INSERT INTO poll_state (source, next_run_at, last_run_at, last_ok_at, failures, last_error, last_found)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (source) DO UPDATE SET next_run_at = excluded.next_run_at, last_run_at = excluded.last_run_at,
			last_found = excluded.last_found,
			last_ok_at = CASE WHEN excluded.last_ok_at = 0 THEN poll_state.last_ok_at ELSE excluded.last_ok_at END,
			failures = CASE WHEN excluded.last_error = '' THEN 0 ELSE poll_state.failures + 1 END,
			last_error = excluded.last_error`,
		p.Source, micros(p.NextRunAt), micros(p.Now), ok, min(1, len(p.Error)), store.Text(p.Error), p.Found)
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
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT record_id, version FROM poll_records
		WHERE source = ? AND record_id IN (SELECT value FROM json_each(?))`, source, string(list))
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
