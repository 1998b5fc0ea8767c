package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/internal/store"
)

const qUpsertFingerprint = `INSERT INTO fingerprints (id, system, entity, record_id, fields, hash, run_id, hop, chain, created_at, written_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO UPDATE SET system = excluded.system,
	entity = excluded.entity, record_id = CASE WHEN excluded.record_id = '' THEN fingerprints.record_id ELSE excluded.record_id END, fields = excluded.fields, hash = excluded.hash,
	run_id = excluded.run_id, hop = excluded.hop, chain = excluded.chain, created_at = excluded.created_at, written_at = excluded.written_at`

func fingerprintArgs(f store.Fingerprint) []any {
	fields, _ := json.Marshal(f.Fields) // a []string always encodes
	return []any{f.ID, f.System, f.Entity, f.RecordID, string(fields), f.Hash, f.RunID, f.Hop, f.Chain, f.CreatedAt, f.WriteTime()}
}

// queueFingerprint adds a fingerprint's upsert to a finish batch.
func queueFingerprint(b *pgx.Batch, f store.Fingerprint) {
	b.Queue(qUpsertFingerprint, fingerprintArgs(f)...)
}

// lineageRows holds the lineage of a batch's events as the columns of an
// unnest: most events have none and add no row.
type lineageRows struct {
	ids, outcomes, chains, parents []string
	hops                           []int32
}

func (l *lineageRows) add(eventID string, x store.Lineage) {
	if x.IsZero() {
		return
	}
	l.ids, l.outcomes, l.chains, l.parents = append(l.ids, eventID), append(l.outcomes, string(x.Outcome)), append(l.chains, x.Chain), append(l.parents, x.ParentRun)
	l.hops = append(l.hops, int32(x.Hop))
}

// insertLineage stores one new event's lineage, if it has any.
func insertLineage(ctx context.Context, tx pgx.Tx, eventID string, x store.Lineage) error {
	if x.IsZero() {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO event_lineage (event_id, outcome, hop, chain, parent_run) VALUES ($1, $2, $3, $4, $5)`,
		eventID, string(x.Outcome), int32(x.Hop), x.Chain, x.ParentRun); err != nil {
		return fmt.Errorf("insert event lineage: %w", err)
	}
	return nil
}

// SaveFingerprint upserts a fingerprint.
func (s *Store) SaveFingerprint(ctx context.Context, f store.Fingerprint) error {
	if _, err := s.pool.Exec(ctx, qUpsertFingerprint, fingerprintArgs(f)...); err != nil {
		return fmt.Errorf("save fingerprint: %w", err)
	}
	return nil
}

// FindFingerprints reads the record's recent fingerprints and those of
// unknown records through fingerprints_record, each kind with its own
// LIMIT: one LIMIT over both would let many writes of unknown records (a
// burst of creates) push the record's own fingerprint out of the answer.
// Those of unknown records are read from p.UnknownFrom(). The window is on
// created_at (the answer), the order on written_at (the call's start; see
// store.Fingerprint), so the rows in the window are sorted rather than
// read in index order: a record's writes of one window, and the writes of
// unknown records of two minutes.
func (s *Store) FindFingerprints(ctx context.Context, p store.FindFingerprintsParams) ([]store.Fingerprint, error) {
	n, unknown := limit(p.Limit), limit(p.Limit)
	if p.RecordID == "" {
		unknown = 0 // the first kind is that one already
	}
	const kind = `(SELECT f.id, f.system, f.entity, f.record_id, f.fields, f.hash, f.run_id, f.hop, f.chain,
		coalesce(e.echo_hash, '') AS echo_hash, f.created_at, f.written_at FROM fingerprints f
		LEFT JOIN fingerprint_echoes e ON e.fingerprint_id = f.id AND e.source = $7
		WHERE f.system = $1 AND f.entity = $2 AND f.record_id = %s AND f.created_at >= %s
		ORDER BY f.written_at DESC, f.id DESC LIMIT %s)`
	rows, err := s.pool.Query(ctx, fmt.Sprintf(kind, "$3", "$4", "$5")+` UNION ALL `+fmt.Sprintf(kind, "''", "$8", "$6")+` ORDER BY written_at DESC, id DESC`,
		p.System, p.Entity, p.RecordID, p.Since, n, unknown, p.Source, p.UnknownFrom())
	if err != nil {
		return nil, fmt.Errorf("find fingerprints: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Fingerprint, error) {
		var f store.Fingerprint
		var fields string
		if err := r.Scan(&f.ID, &f.System, &f.Entity, &f.RecordID, &fields, &f.Hash, &f.RunID, &f.Hop, &f.Chain, &f.EchoHash, &f.CreatedAt, &f.WrittenAt); err != nil {
			return f, err
		}
		f.CreatedAt, f.WrittenAt = f.CreatedAt.UTC(), f.WrittenAt.UTC()
		if err := json.Unmarshal([]byte(fields), &f.Fields); err != nil {
			return f, fmt.Errorf("fingerprint %s: fields: %w", f.ID, err)
		}
		return f, nil
	})
}

// MarkEcho records the first echo's whole-record hash for its source, and
// gives a fingerprint of an unknown record the echo's record id. A
// fingerprint deleted meanwhile (forgotten, pruned) is left alone.
func (s *Store) MarkEcho(ctx context.Context, p store.MarkEchoParams) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO fingerprint_echoes (fingerprint_id, source, echo_hash)
			SELECT id, $1, $2 FROM fingerprints WHERE id = $3 ON CONFLICT DO NOTHING`, p.Source, p.EchoHash, p.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE fingerprints SET record_id = $1 WHERE id = $2 AND record_id = ''`, p.RecordID, p.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark echo: %w", err)
	}
	return nil
}

// queueDropFingerprint adds the deletion of a refused write's fingerprint
// to a finish batch (see store.FinishParams.DropFingerprint).
func queueDropFingerprint(b *pgx.Batch, id string) {
	b.Queue(`DELETE FROM fingerprints WHERE id = $1`, id)
}

// ForgetFingerprints deletes a record's fingerprints written before p.Before.
func (s *Store) ForgetFingerprints(ctx context.Context, p store.ForgetFingerprintsParams) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM fingerprints WHERE system = $1 AND entity = $2 AND record_id = $3 AND created_at < $4`,
		p.System, p.Entity, p.RecordID, p.Before)
	if err != nil {
		return 0, fmt.Errorf("forget fingerprints: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PruneFingerprints deletes one batch of old fingerprints.
func (s *Store) PruneFingerprints(ctx context.Context, before time.Time, n int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM fingerprints WHERE id IN (
		SELECT id FROM fingerprints WHERE created_at < $1 ORDER BY created_at LIMIT $2)`, before, limit(n))
	if err != nil {
		return 0, fmt.Errorf("prune fingerprints: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// GetLineage returns an event's lineage.
func (s *Store) GetLineage(ctx context.Context, eventID string) (store.Lineage, error) {
	var l store.Lineage
	err := s.pool.QueryRow(ctx, `SELECT outcome, hop, chain, parent_run FROM event_lineage WHERE event_id = $1`, eventID).
		Scan(&l.Outcome, &l.Hop, &l.Chain, &l.ParentRun)
	if isNoRows(err) {
		return store.Lineage{}, nil
	}
	if err != nil {
		return l, fmt.Errorf("get lineage: %w", err)
	}
	return l, nil
}
