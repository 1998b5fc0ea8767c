package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/store/sqlite"
	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

func openBench(b *testing.B) *sqlite.Store {
	b.Helper()
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s
}

// The hot transactions: see storetest.BenchInsertEvents and its siblings.

func BenchmarkInsertEvents(b *testing.B)   { storetest.BenchInsertEvents(b, openBench(b)) }
func BenchmarkClaimFinish(b *testing.B)    { storetest.BenchClaimFinish(b, openBench(b)) }
func BenchmarkFinishAndClaim(b *testing.B) { storetest.BenchFinishAndClaim(b, openBench(b)) }

// BenchmarkDeleteExpired times retention batches behind expired events
// kept for their pending runs; see storetest.BenchDeleteExpired.
func BenchmarkDeleteExpired(b *testing.B) { storetest.BenchDeleteExpired(b, openBench(b)) }
