package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

const lineageConfig = `
version: 1
systems:
  crm: { kind: http, base_url: "http://127.0.0.1:9" }
  sched: { kind: http, base_url: "http://127.0.0.1:9" }
entities:
  job: { owner: sched, mirrors: [crm] }
sources:
  crm_changed: { webhook: {}, system: crm, entity: job, record_id: .id, record: .job }
  # the CRM's jobs as a poll shows them: the whole item is the record
  crm_polled: { webhook: {}, system: crm, entity: job, record_id: .id }
flows:
  notify:
    on: crm_changed
    steps: [{ id: a, do: sched.request, with: { path: '"/x"' } }]
  notify_polled:
    on: crm_polled
    steps: [{ id: a, do: sched.request, with: { path: '"/x"' } }]
`

type lineageBundle struct {
	st  store.Store
	eng *engine.Engine
	now time.Time
}

func setupLineage(t *testing.T) *lineageBundle {
	t.Helper()
	plan, st := planAndStore(t, lineageConfig)
	b := &lineageBundle{st: st, now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	b.eng = engine.New(engine.Config{Store: st, Plan: plan, Fingerprints: textOnly{st}, NowFunc: func() time.Time { return b.now }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.eng.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// wrote records a write of job 7 to the CRM, as delivery would.
func (b *lineageBundle) wrote(t *testing.T, key string, fields map[string]any) {
	t.Helper()
	b.wroteRecord(t, key, "7", fields)
}

// wroteRecord records a write of a job to the CRM ("" for a create whose
// answer named no record).
func (b *lineageBundle) wroteRecord(t *testing.T, key, record string, fields map[string]any) {
	t.Helper()
	fp := echo.Of(fields)
	require.NoError(t, b.st.SaveFingerprint(t.Context(), store.Fingerprint{
		ID: key, System: "crm", Entity: "job", RecordID: record, Fields: fp.Fields, Hash: fp.Hash,
		RunID: "run_" + key, Hop: 1, Chain: "sched_changed → crm job 7", CreatedAt: b.now,
	}))
}

// event sends a crm_changed event about job 7 and returns its lineage.
func (b *lineageBundle) event(t *testing.T, key, payload string) (engine.Accepted, store.Lineage) {
	t.Helper()
	return b.eventOf(t, "crm_changed", key, payload)
}

// eventOf sends an event of source and returns its lineage.
func (b *lineageBundle) eventOf(t *testing.T, source, key, payload string) (engine.Accepted, store.Lineage) {
	t.Helper()
	b.now = b.now.Add(time.Second)
	v, err := transform.Decode([]byte(payload))
	require.NoError(t, err)
	acc, err := b.eng.Accept(t.Context(), engine.Event{Source: source, Key: key, Payload: []byte(payload), Value: v})
	require.NoError(t, err)
	l, err := b.st.GetLineage(t.Context(), acc.EventID)
	require.NoError(t, err)
	return acc, l
}

// textOnly refuses a record id PostgreSQL's text type refuses (a NUL), as
// the PostgreSQL store does, over the SQLite store, which takes it.
type textOnly struct{ store.Store }

func (s textOnly) FindFingerprints(ctx context.Context, p store.FindFingerprintsParams) ([]store.Fingerprint, error) {
	if strings.ContainsRune(p.RecordID, 0) {
		return nil, errors.New(`ERROR: invalid byte sequence for encoding "UTF8": 0x00 (SQLSTATE 22021)`)
	}
	return s.Store.FindFingerprints(ctx, p)
}

func TestLineage(t *testing.T) {
	t.Parallel()

	t.Run("echo, repeated echo, then a person's change elsewhere", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wrote(t, "w1", map[string]any{"status": "done"})
		acc, l := b.event(t, "e1", `{"id": 7, "job": {"status": "done", "title": "Boiler"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome)
		require.Zero(t, acc.Runs)
		require.Equal(t, store.Lineage{Outcome: store.EventEcho, Hop: 1, Chain: "sched_changed → crm job 7 → crm_changed", ParentRun: "run_w1"}, l)

		acc, _ = b.event(t, "e2", `{"id": "7", "job": {"status": " done", "title": "Boiler"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "the same echo delivered twice (id as string, padded value)")

		acc, l = b.event(t, "e3", `{"id": 7, "job": {"status": "done", "title": "Boiler repair"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome, "a person changed the title: not our echo")
		require.Equal(t, 1, acc.Runs)
		require.Equal(t, store.Lineage{Hop: 1, Chain: "sched_changed → crm job 7 → crm_changed", ParentRun: "run_w1"}, l,
			"it may as well be a second webhook about our write (a bumped updated_at): it stays in the write's chain, so max_hops still stops a loop")
	})

	t.Run("each source has its own first echo", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wrote(t, "w1", map[string]any{"status": "done"})
		acc, _ := b.event(t, "e1", `{"id": 7, "job": {"status": "done", "title": "Boiler"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome)
		// The poll of the same system shows the record in another shape.
		acc, _ = b.eventOf(t, "crm_polled", "p1", `{"id": 7, "status": "done", "title": "Boiler", "updated_at": "2026-11-29T12:00:01Z"}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "the webhook's echo does not make the poll's look like a person's change")
		acc, _ = b.event(t, "e2", `{"id": 7, "job": {"status": "done", "title": "Boiler"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "nor the other way round")
	})

	t.Run("a duplicate does not mark the first echo", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		acc, _ := b.event(t, "e0", `{"id": 7, "job": {"status": "done", "title": "Old"}}`)
		require.Equal(t, 1, acc.Runs)
		b.wrote(t, "w1", map[string]any{"status": "done"})
		acc, _ = b.event(t, "e0", `{"id": 7, "job": {"status": "done", "title": "Old"}}`)
		require.True(t, acc.Duplicate, "a redelivery of an event from before our write")
		acc, _ = b.event(t, "e1", `{"id": 7, "job": {"status": "done", "title": "New"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "the real first echo")
	})

	t.Run("a changed written field counts as a hop; setting it back is not an echo", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wrote(t, "w1", map[string]any{"status": "done"})
		acc, l := b.event(t, "e1", `{"id": 7, "job": {"status": "reopened"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome)
		require.Equal(t, 1, l.Hop, "possibly our write, rewritten: the chain goes on")
		acc, l = b.event(t, "e2", `{"id": 7, "job": {"status": "done"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome, "the fingerprint was forgotten: a person set it back")
		require.True(t, l.IsZero())
	})

	t.Run("a create's echo makes its fingerprint the record's", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wroteRecord(t, "w1", "", map[string]any{"status": "done"})
		acc, _ := b.event(t, "e1", `{"id": "J-1", "job": {"status": "done"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "matched by its fields alone")
		acc, _ = b.event(t, "e2", `{"id": "J-99", "job": {"status": "done"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome, "a person's change to another record with the same values")
		require.Equal(t, 1, acc.Runs)
	})

	t.Run("a create's fingerprint matches by fields only for a short while", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wroteRecord(t, "w1", "", map[string]any{"status": "done"})
		b.now = b.now.Add(3 * time.Minute) // well inside the echo window
		acc, _ := b.event(t, "e1", `{"id": "J-99", "job": {"status": "done"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome, "its echo would have come by now: this is a person's change")
	})

	t.Run("a record id PostgreSQL cannot store is hashed as delivery hashes it", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wroteRecord(t, "w1", flow.StorableKey("J\x00-1"), map[string]any{"status": "done"})
		acc, _ := b.event(t, "e1", `{"id": "J\u0000-1", "job": {"status": "done"}}`)
		require.Equal(t, store.EventEcho, acc.Outcome, "found, and the event accepted rather than failing (a webhook answered 503 forever)")
	})

	t.Run("outside the window or another record", func(t *testing.T) {
		t.Parallel()
		b := setupLineage(t)
		b.wrote(t, "w1", map[string]any{"status": "done"})
		acc, _ := b.event(t, "e1", `{"id": 8, "job": {"status": "done"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome)
		b.now = b.now.Add(flow.DefaultEchoWindow)
		acc, _ = b.event(t, "e2", `{"id": 7, "job": {"status": "done"}}`)
		require.Equal(t, store.EventProcessed, acc.Outcome)
	})
}
