package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

// compileWithStore compiles deliverConfig with its store at storePath.
func compileWithStore(t *testing.T, storePath string) *flow.Plan {
	t.Helper()
	yamlText := strings.Replace(deliverConfig, "store: sqlite:sb.db", "store: sqlite:"+storePath, 1)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "switchboard.yaml"), []byte(yamlText), func(name string) (string, bool) {
		v, ok := map[string]string{"DOWNSTREAM_URL": "http://127.0.0.1:1", "E2E_SECRET": e2eSecret}[name]
		return v, ok
	})
	require.NoError(t, err)
	plan, err := app.Compile(cfg)
	require.NoError(t, err)
	return plan
}

// TestStoreLockErrors: a second node on a SQLite file is refused as such,
// but a data directory that is missing or unwritable is named for what it
// is, not blamed on another process the operator would then hunt for.
func TestStoreLockErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plan := compileWithStore(t, filepath.Join(dir, "sb.db"))
	first, err := app.NewServer(t.Context(), plan, app.Options{})
	require.NoError(t, err)
	defer first.Close()
	_, err = app.NewServer(t.Context(), plan, app.Options{})
	require.ErrorContains(t, err, "in use by another switchboard process")

	_, err = app.NewServer(t.Context(), compileWithStore(t, filepath.Join(dir, "missing", "sb.db")), app.Options{})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "another switchboard process")
	require.ErrorIs(t, err, os.ErrNotExist)
}
