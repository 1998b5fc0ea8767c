package cli_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
)

// TestEventsShowTrace: an event received while tracing was on shows its
// trace id, the key to find it in a tracing UI.
func TestEventsShowTrace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("version: 1\nstore: sqlite:sb.db\nsources:\n  s:\n    webhook: {}\n"), 0o600))
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "sb.db"))
	require.NoError(t, err)
	now := time.Now()
	res, err := st.InsertEvents(t.Context(), []store.NewEvent{
		{ID: store.NewID("evt_", now), Source: "s", Key: "traced", ReceivedAt: now, Payload: []byte(`{}`),
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{ID: store.NewID("evt_", now), Source: "s", Key: "untraced", ReceivedAt: now, Payload: []byte(`{}`)},
	})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	code, out, errOut := run(t, nil, "events", "show", res[0].EventID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "trace    4bf92f3577b34da6a3ce929d0e0e4736\n")
	code, out, errOut = run(t, nil, "events", "show", res[1].EventID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "trace ")
}
