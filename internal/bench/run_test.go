package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRunShort runs the whole bench briefly on SQLite: every phase
// reports, and every acknowledged event is delivered exactly once.
func TestRunShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three load phases")
	}
	rep, err := Run(t.Context(), Config{Connections: 8, Duration: Dur(300 * time.Millisecond), Workers: 16, DupPercent: 3, FailPercent: 10, Ceilings: true}, nil)
	require.NoError(t, err)
	var names []string
	for _, p := range rep.Phases {
		names = append(names, p.Name)
		require.Zero(t, p.Lost, p.Name)
		require.Zero(t, p.Duplicates, p.Name)
	}
	require.Equal(t, []string{"baseline", "append", "relay", "ingest", "e2e"}, names)
	require.Greater(t, rep.AppendRatio, 0.0)
	require.Greater(t, rep.RelayDeliveredRatio, 0.0, "the relay delivered every acknowledged event (10% of first posts answered 503)")
	require.Greater(t, rep.BaselineRPS, 0.0)
	require.Greater(t, rep.IngestRPS, 0.0)
	require.Greater(t, rep.E2EDeliveredPerS, 0.0)
	require.Zero(t, rep.Lost)
	require.Zero(t, rep.Duplicates)
	require.Equal(t, "sqlite", rep.StoreKind)
}

// TestRunSeparateProcesses runs the bench as `switchboard bench
// --separate-processes` does: the baseline server and the nodes are
// processes of their own, so each phase's CPU and peak RSS are theirs, and
// the bench process's own CPU (load generator and sink) is reported apart.
func TestRunSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds switchboard and runs three load phases")
	}
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/switchboard")
	build.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	out, err = build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	prof := filepath.Join(t.TempDir(), "cpu.prof")
	rep, err := Run(t.Context(), Config{Connections: 8, Duration: Dur(500 * time.Millisecond), Workers: 16, DupPercent: 3, Self: bin,
		SeparateProcesses: true, NodeCPUProfile: prof}, nil)
	require.NoError(t, err)
	require.True(t, rep.NodeProcess)
	require.Len(t, rep.Phases, 3)
	for _, p := range rep.Phases {
		require.Positive(t, p.Requests, p.Name)
		require.Positive(t, p.CPUPerEvUS, "%s: the server process's CPU", p.Name)
		require.Positive(t, p.LoadCPUPerEvUS, "%s: the bench process's CPU", p.Name)
		require.Positive(t, p.PeakRSSMB, "%s: the server process's peak RSS", p.Name)
	}
	for _, phase := range []string{"ingest", "e2e"} {
		st, err := os.Stat(filepath.Join(filepath.Dir(prof), "cpu-"+phase+".prof"))
		require.NoError(t, err, "the %s node's CPU profile", phase)
		require.Positive(t, st.Size())
	}
	require.Positive(t, rep.ServeReadyMS)
	require.Positive(t, rep.IdleRSSMB)
	require.Zero(t, rep.Lost)
	require.Zero(t, rep.Duplicates)
}
