package delivery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/echo"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// writesJob is a flow whose step writes a job to a system that sends
// events about jobs: its writes are fingerprinted.
const writesJob = `
version: 1
retry: { base: 1ms, cap: 5ms, attempts: 3 }
systems: { sys: { kind: fake } }
entities: { job: { owner: sys } }
sources: { src: { webhook: {}, system: sys, entity: job, record_id: .id } }
flows:
  f:
    on: src
    steps:
      - { id: one, do: sys.first, writes: job, record_id: '$steps.one.id', fields: { status: .status }, with: { value: .status } }
`

func (b *bundle) fingerprints(t *testing.T, record string) []store.Fingerprint {
	t.Helper()
	fps, err := b.store.FindFingerprints(t.Context(), store.FindFingerprintsParams{
		System: "sys", Entity: "job", RecordID: record, Since: time.Now().Add(-time.Hour),
	})
	require.NoError(t, err)
	return fps
}

// TestFingerprintBeforeCallAndCompletedAfter: the fingerprint is durable
// before the outbound call (an echo may arrive while it is in flight), and
// the finishing transaction completes it with the created record's id.
func TestFingerprintBeforeCallAndCompletedAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, writesJob)
	var during []store.Fingerprint
	b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
		during = b.fingerprints(t, "J-1")
		time.Sleep(5 * time.Millisecond) // a call that takes a while
		return connector.Result{Output: map[string]any{"id": "J-1"}, Status: 201}, nil
	}
	b.insert(t, "k1", `{"id": "evt-1", "status": "done"}`)
	b.runUntil(t, allFinished)

	want := echo.Of(map[string]any{"status": "done"})
	require.Len(t, during, 1, "saved before the call")
	require.Empty(t, during[0].RecordID, "the created record's id is not known yet")
	require.Equal(t, want.Hash, during[0].Hash)

	after := b.fingerprints(t, "J-1")
	require.Len(t, after, 1, "the same row, completed")
	require.Equal(t, during[0].ID, after[0].ID)
	require.Equal(t, "J-1", after[0].RecordID)
	require.Equal(t, []string{"status"}, after[0].Fields)
	require.Equal(t, 1, after[0].Hop)
	require.Equal(t, "src → sys job J-1", after[0].Chain)
	// The windows count from the answer, but the write keeps its place
	// among the record's writes: when its call started.
	require.True(t, after[0].CreatedAt.After(during[0].CreatedAt), "the windows count from the answer")
	require.Equal(t, during[0].WrittenAt, after[0].WrittenAt, "the answer does not make the write newer")
	require.Equal(t, during[0].CreatedAt, during[0].WrittenAt)
}

// TestHopLimit: a write that would extend a chain past max_hops is not
// made; the run is dead-lettered naming the chain.
func TestHopLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, writesJob)
	b.sys["first"].do = ok(map[string]any{"id": "J-1"})
	now := time.Now()
	_, err := b.store.InsertEvents(t.Context(), []store.NewEvent{{
		ID: store.NewID("evt_", now), Source: "src", Key: "k1", ReceivedAt: now, Payload: []byte(`{"id": "J-1", "status": "done"}`),
		Runs:    []store.NewRun{{ID: store.NewID("run_", now), Flow: "f", StepID: "one"}},
		Lineage: store.Lineage{Hop: 5, Chain: "src → sys job J-1 → src → sys job J-1 → src", ParentRun: "run_x"},
	}})
	require.NoError(t, err)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunDead, runs[0].State)
	require.Empty(t, b.sys["first"].Calls(), "the write was not made")
	require.Contains(t, runs[0].LastError, "hop limit: writing job to sys would be write 6 of one causal chain (max_hops 5)")
	require.Contains(t, runs[0].LastError, "src → sys job J-1 → src → sys job J-1 → src → sys")
	require.Len(t, b.dead.dead, 1, "alerted")
	require.Contains(t, b.dead.dead[0].Error, "hop limit")
}

// TestRefusedWriteLeavesNoFingerprint: a write the system refused did not
// happen, so its fingerprint (saved before the call, with no record id
// for a create) must not stay to match a person's change to any record
// with the same values. After a transient failure it stays: the call may
// have taken effect.
func TestRefusedWriteLeavesNoFingerprint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		kept int
	}{
		{"refused", connector.Permanent(errors.New("HTTP 422: status is invalid")), 0},
		{"retries exhausted", errors.New("HTTP 503"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, writesJob)
			b.sys["first"].do = func(int, connector.Request) (connector.Result, error) {
				return connector.Result{Status: 422}, tc.err
			}
			b.insert(t, "k1", `{"id": "evt-1", "status": "done"}`)
			runs := b.runUntil(t, allFinished)
			require.Equal(t, store.RunDead, runs[0].State)
			require.Len(t, b.fingerprints(t, "J-99"), tc.kept, "a fingerprint of an unknown record matches J-99 by its fields")
		})
	}
}

// TestFingerprintRecordIDStorable: a record id PostgreSQL's text refuses
// (a NUL) is stored as the engine looks it up: hashed like an event key.
func TestFingerprintRecordIDStorable(t *testing.T) {
	t.Parallel()
	b := setup(t, writesJob)
	b.sys["first"].do = ok(map[string]any{"id": "J\x00-1"})
	b.insert(t, "k1", `{"id": "evt-1", "status": "done"}`)
	b.runUntil(t, allFinished)
	fps := b.fingerprints(t, flow.StorableKey("J\x00-1"))
	require.Len(t, fps, 1)
	require.Equal(t, flow.StorableKey("J\x00-1"), fps[0].RecordID)
	require.NotContains(t, fps[0].Chain, "\x00")
}

// TestRecordIDTimeoutIsRetried: a write's record_id: cut off by jq's time
// limit before the call is retried like a failed call: the fingerprint,
// saved without the id, would have matched the write's echo by its fields
// alone.
func TestRecordIDTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, strings.NewReplacer("attempts: 3", "attempts: 2",
		"record_id: '$steps.one.id'", "record_id: '(reduce range(1e10) as $i (0; . + 1)) | tostring'").Replace(writesJob))
	b.sys["first"].do = ok(map[string]any{"id": "7"})
	b.insert(t, "k1", `{"id": "7", "status": "done"}`)
	runs := b.runUntil(t, allFinished)
	require.Equal(t, store.RunDead, runs[0].State)
	require.Contains(t, runs[0].LastError, "gave up after 2 attempts")
	require.Contains(t, runs[0].LastError, "record_id")
	require.Empty(t, b.sys["first"].Calls(), "no call without the record's id")
	require.Empty(t, b.fingerprints(t, ""), "and no fingerprint without it")
}
