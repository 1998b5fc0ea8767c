package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// PauseSystem inserts the pause unless one exists.
func (s *Store) PauseSystem(ctx context.Context, p store.PauseParams) (bool, error) {
	// An operator's pause replaces a credential pause (it must not be
	// lifted by a probe); a credential pause never replaces anything.
	tag, err := s.pool.Exec(ctx, `INSERT INTO system_pauses (system, reason, paused_at) VALUES ($1, $2, $3)
		ON CONFLICT (system) DO UPDATE SET reason = excluded.reason, paused_at = excluded.paused_at
		WHERE excluded.reason = $4 AND system_pauses.reason <> $4`, p.System, store.Text(p.Reason), p.Now, store.OperatorPause)
	if err != nil {
		return false, fmt.Errorf("pause system %s: %w", p.System, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ResumeSystem deletes the pause.
func (s *Store) ResumeSystem(ctx context.Context, system string) (bool, error) {
	return s.resume(ctx, system, "")
}

// resume deletes the system's pause unless its reason is keep ("": any).
func (s *Store) resume(ctx context.Context, system, keep string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM system_pauses WHERE system = $1 AND ($2 = '' OR reason <> $2)`, system, keep)
	if err != nil {
		return false, fmt.Errorf("resume system %s: %w", system, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ResumeCredentialPause deletes the pause unless it is an operator's.
func (s *Store) ResumeCredentialPause(ctx context.Context, system string) (bool, error) {
	return s.resume(ctx, system, store.OperatorPause)
}

// ListPauses returns the paused systems by name.
func (s *Store) ListPauses(ctx context.Context) ([]store.SystemPause, error) {
	rows, err := s.pool.Query(ctx, `SELECT system, reason, paused_at FROM system_pauses ORDER BY system`)
	if err != nil {
		return nil, fmt.Errorf("list paused systems: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SystemPause, error) {
		var p store.SystemPause
		err := r.Scan(&p.System, &p.Reason, &p.PausedAt)
		p.PausedAt = p.PausedAt.UTC()
		return p, err
	})
}

// WakeHeld makes the runs held for system due now and wakes idle nodes.
func (s *Store) WakeHeld(ctx context.Context, system string, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE runs SET due_at = $1, held_system = '' WHERE state = 'retrying' AND held_system = $2`, now, system)
	if err != nil {
		return 0, fmt.Errorf("wake runs held for %s: %w", system, err)
	}
	n := int(tag.RowsAffected())
	if n > 0 {
		_, _ = s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, channel)
	}
	return n, nil
}
