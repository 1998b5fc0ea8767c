package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/internal/store"
)

// NextDue reads the head of the runnable index.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(due_at) FROM runs WHERE state IN ('pending', 'retrying', 'running')`).Scan(&due)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	if due == nil {
		return time.Time{}, false, nil
	}
	return due.UTC(), true, nil
}

// AcquireLease is one upsert: it inserts the lease, or takes it over when
// it is ours or has expired; otherwise the WHERE leaves it and returns no row.
func (s *Store) AcquireLease(ctx context.Context, p store.LeaseParams) (bool, error) {
	var holder string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
		RETURNING holder`, p.Name, p.Holder, p.Until, p.Now).Scan(&holder)
	if isNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", p.Name, err)
	}
	return holder == p.Holder, nil
}

// ReleaseLease deletes the lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// DeleteExpired deletes one batch. SKIP LOCKED passes over events another
// transaction holds (a replay, say) instead of waiting; ON DELETE CASCADE
// removes their runs, checkpoints and attempts.
func (s *Store) DeleteExpired(ctx context.Context, p store.DeleteParams) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE id IN (
			SELECT e.id FROM events e WHERE e.received_at < $1
			AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id AND r.state IN ('pending', 'running', 'retrying'))
			ORDER BY e.received_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, p.Before, limit(p.Limit))
	if err != nil {
		return 0, fmt.Errorf("delete expired events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
