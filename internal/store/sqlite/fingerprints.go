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

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Not prepared at Open like the hot statements: most events and writes
// have no lineage or fingerprint.
const qUpsertFingerprint = `INSERT INTO fingerprints (id, system, entity, record_id, fields, hash, run_id, hop, chain, created_at, written_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET system = excluded.system,
	entity = excluded.entity, record_id = CASE WHEN excluded.record_id = '' THEN fingerprints.record_id ELSE excluded.record_id END, fields = excluded.fields, hash = excluded.hash,
	run_id = excluded.run_id, hop = excluded.hop, chain = excluded.chain, created_at = excluded.created_at, written_at = excluded.written_at`

func upsertFingerprint(ctx context.Context, db execer, f store.Fingerprint) error {
	fields, err := json.Marshal(f.Fields)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, qUpsertFingerprint, f.ID, f.System, f.Entity, f.RecordID, string(fields), f.Hash,
		f.RunID, f.Hop, f.Chain, micros(f.CreatedAt), micros(f.WriteTime())); err != nil {
		return fmt.Errorf("save fingerprint: %w", err)
	}
	return nil
}

const qInsLineage = `INSERT INTO event_lineage (event_id, outcome, hop, chain, parent_run) VALUES (?, ?, ?, ?, ?)`

func insertLineage(ctx context.Context, db execer, eventID string, l store.Lineage) error {
	if _, err := db.ExecContext(ctx, qInsLineage, eventID, l.Outcome, l.Hop, l.Chain, l.ParentRun); err != nil {
		return fmt.Errorf("insert event lineage: %w", err)
	}
	return nil
}

// SaveFingerprint upserts a fingerprint.
func (s *Store) SaveFingerprint(ctx context.Context, f store.Fingerprint) error {
	return upsertFingerprint(ctx, checked{s}, f)
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
	const kind = `SELECT * FROM (SELECT f.id, f.system, f.entity, f.record_id, f.fields, f.hash, f.run_id, f.hop, f.chain,
		coalesce(e.echo_hash, ''), f.created_at, f.written_at FROM fingerprints f
		LEFT JOIN fingerprint_echoes e ON e.fingerprint_id = f.id AND e.source = ?
		WHERE f.system = ? AND f.entity = ? AND f.record_id = ? AND f.created_at >= ?
		ORDER BY f.written_at DESC, f.id DESC LIMIT ?)`
	n, unknown := limit(p.Limit), limit(p.Limit)
	if p.RecordID == "" {
		unknown = 0 // the first kind is that one already
	}
	rows, err := s.r.QueryContext(ctx, kind+` UNION ALL `+kind+` ORDER BY 12 DESC, 1 DESC`,
		p.Source, p.System, p.Entity, p.RecordID, micros(p.Since), n,
		p.Source, p.System, p.Entity, "", micros(p.UnknownFrom()), unknown)
	if err != nil {
		return nil, fmt.Errorf("find fingerprints: %w", err)
	}
	defer rows.Close()
	var out []store.Fingerprint
	for rows.Next() {
		var f store.Fingerprint
		var fields string
		var at, written int64
		if err := rows.Scan(&f.ID, &f.System, &f.Entity, &f.RecordID, &fields, &f.Hash, &f.RunID, &f.Hop, &f.Chain, &f.EchoHash, &at, &written); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(fields), &f.Fields); err != nil {
			return nil, fmt.Errorf("fingerprint %s: fields: %w", f.ID, err)
		}
		f.CreatedAt, f.WrittenAt = fromMicros(at), fromMicros(written)
		out = append(out, f)
	}
	return out, rows.Err()
}

// MarkEcho records the first echo's whole-record hash for its source, and
// gives a fingerprint of an unknown record the echo's record id. A
// fingerprint deleted meanwhile (forgotten, pruned) is left alone.
func (s *Store) MarkEcho(ctx context.Context, p store.MarkEchoParams) error {
	return s.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fingerprint_echoes (fingerprint_id, source, echo_hash)
			SELECT id, ?, ? FROM fingerprints WHERE id = ? ON CONFLICT DO NOTHING`, p.Source, p.EchoHash, p.ID); err != nil {
			return fmt.Errorf("mark echo: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE fingerprints SET record_id = ? WHERE id = ? AND record_id = ''`, p.RecordID, p.ID); err != nil {
			return fmt.Errorf("mark echo: %w", err)
		}
		return nil
	})
}

// dropFingerprint deletes a refused write's fingerprint (see
// store.FinishParams.DropFingerprint).
func dropFingerprint(ctx context.Context, db execer, id string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM fingerprints WHERE id = ?`, id); err != nil {
		return fmt.Errorf("drop fingerprint: %w", err)
	}
	return nil
}

// ForgetFingerprints deletes a record's fingerprints written before p.Before.
func (s *Store) ForgetFingerprints(ctx context.Context, p store.ForgetFingerprintsParams) (int, error) {
	res, err := s.exec(ctx, `DELETE FROM fingerprints WHERE system = ? AND entity = ? AND record_id = ? AND created_at < ?`,
		p.System, p.Entity, p.RecordID, micros(p.Before))
	if err != nil {
		return 0, fmt.Errorf("forget fingerprints: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// PruneFingerprints deletes one batch of old fingerprints.
func (s *Store) PruneFingerprints(ctx context.Context, before time.Time, n int) (int, error) {
	res, err := s.exec(ctx, `DELETE FROM fingerprints WHERE id IN (
		SELECT id FROM fingerprints WHERE created_at < ? ORDER BY created_at LIMIT ?)`, micros(before), limit(n))
	if err != nil {
		return 0, fmt.Errorf("prune fingerprints: %w", err)
	}
	k, _ := res.RowsAffected()
	return int(k), nil
}

// GetLineage returns an event's lineage.
func (s *Store) GetLineage(ctx context.Context, eventID string) (store.Lineage, error) {
	var l store.Lineage
	err := s.r.QueryRowContext(ctx, `SELECT outcome, hop, chain, parent_run FROM event_lineage WHERE event_id = ?`, eventID).
		Scan(&l.Outcome, &l.Hop, &l.Chain, &l.ParentRun)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Lineage{}, nil
	}
	if err != nil {
		return l, fmt.Errorf("get lineage: %w", err)
	}
	return l, nil
}
