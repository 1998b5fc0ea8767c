package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// PauseSystem inserts the pause unless one exists.
func (s *Store) PauseSystem(ctx context.Context, p store.PauseParams) (bool, error) {
	// An operator's pause replaces a credential pause (it must not be
	// lifted by a probe); a credential pause never replaces anything.
	res, err := s.exec(ctx, `INSERT INTO system_pauses (system, reason, paused_at) VALUES (?, ?, ?)
		ON CONFLICT (system) DO UPDATE SET reason = excluded.reason, paused_at = excluded.paused_at
		WHERE excluded.reason = ? AND system_pauses.reason <> ?`, p.System, store.Text(p.Reason), micros(p.Now), store.OperatorPause, store.OperatorPause)
	if err != nil {
		return false, fmt.Errorf("pause system %s: %w", p.System, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ResumeSystem deletes the pause.
func (s *Store) ResumeSystem(ctx context.Context, system string) (bool, error) {
	return s.resume(ctx, system, "")
}

// ResumeCredentialPause deletes the pause unless it is an operator's.
func (s *Store) ResumeCredentialPause(ctx context.Context, system string) (bool, error) {
	return s.resume(ctx, system, store.OperatorPause)
}

// resume deletes the system's pause unless its reason is keep ("": any).
func (s *Store) resume(ctx context.Context, system, keep string) (bool, error) {
	res, err := s.exec(ctx, `DELETE FROM system_pauses WHERE system = ? AND (? = '' OR reason <> ?)`, system, keep, keep)
	if err != nil {
		return false, fmt.Errorf("resume system %s: %w", system, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ListPauses returns the paused systems by name.
func (s *Store) ListPauses(ctx context.Context) ([]store.SystemPause, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT system, reason, paused_at FROM system_pauses ORDER BY system`)
	if err != nil {
		return nil, fmt.Errorf("list paused systems: %w", err)
	}
	defer rows.Close()
	var out []store.SystemPause
	for rows.Next() {
		var p store.SystemPause
		var at int64
		if err := rows.Scan(&p.System, &p.Reason, &at); err != nil {
			return nil, err
		}
		p.PausedAt = fromMicros(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// qWakeHeld's state = 'retrying' implies runnable: the scan stays on the
// partial index runs_runnable (held runs are retrying).
const qWakeHeld = `UPDATE runs SET due_at = ?, held_system = '' WHERE state = 'retrying' AND held_system = ?`

// WakeHeld makes the runs held for system due now.
func (s *Store) WakeHeld(ctx context.Context, system string, now time.Time) (int, error) {
	res, err := s.exec(ctx, qWakeHeld, micros(now), system)
	if err != nil {
		return 0, fmt.Errorf("wake runs held for %s: %w", system, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
