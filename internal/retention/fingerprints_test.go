package retention_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/retention"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

func TestPruneFingerprints(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	defer st.Close()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, age := range []time.Duration{time.Minute, 15 * time.Minute, 25 * time.Minute, time.Hour} {
		require.NoError(t, st.SaveFingerprint(t.Context(), store.Fingerprint{
			ID: string(rune('a' + i)), System: "crm", Entity: "customer", RecordID: "1", Fields: []string{"name"}, Hash: "h",
			CreatedAt: now.Add(-age),
		}))
	}
	p := retention.NewFingerprints(st, 10*time.Minute, retention.Config{NowFunc: func() time.Time { return now }})
	n, err := p.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, n, "older than twice the window")
	left, err := st.FindFingerprints(t.Context(), store.FindFingerprintsParams{System: "crm", Entity: "customer", RecordID: "1", Since: now.Add(-time.Hour)})
	require.NoError(t, err)
	require.Len(t, left, 2)
}
