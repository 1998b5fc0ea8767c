package postgres_test

import (
	"testing"

	"github.com/switchboard-dev/switchboard/internal/store/storetest"
)

// The hot transactions on a fresh schema (see storetest.BenchInsertEvents
// and its siblings). They need SWITCHBOARD_TEST_POSTGRES; the CPU they
// report is this process's, not the server's.

func BenchmarkInsertEvents(b *testing.B)   { storetest.BenchInsertEvents(b, open(b)) }
func BenchmarkClaimFinish(b *testing.B)    { storetest.BenchClaimFinish(b, open(b)) }
func BenchmarkFinishAndClaim(b *testing.B) { storetest.BenchFinishAndClaim(b, open(b)) }

// BenchmarkDeleteExpired times retention batches behind expired events
// kept for their pending runs; see storetest.BenchDeleteExpired.
func BenchmarkDeleteExpired(b *testing.B) { storetest.BenchDeleteExpired(b, open(b)) }
