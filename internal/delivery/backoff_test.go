package delivery_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/flow"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := flow.RetryPolicy{Attempts: 8, Base: time.Second, Cap: 10 * time.Second}
	highest := func(n int64) int64 { return n - 1 }
	lowest := func(int64) int64 { return 0 }
	tests := []struct {
		name    string
		attempt int
		ra      time.Duration
		hasRA   bool
		randN   func(int64) int64
		want    time.Duration
	}{
		{"first retry at most base", 1, 0, false, highest, time.Second},
		{"doubles", 3, 0, false, highest, 4 * time.Second},
		{"capped", 10, 0, false, highest, 10 * time.Second},
		{"full jitter reaches zero", 3, 0, false, lowest, 0},
		{"retry-after honoured exactly", 1, 7 * time.Second, true, highest, 7 * time.Second},
		{"retry-after capped", 1, time.Hour, true, highest, 10 * time.Second},
		{"negative retry-after is now", 1, -time.Second, true, highest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, delivery.Backoff(p, tt.attempt, tt.ra, tt.hasRA, tt.randN))
		})
	}
}

func TestBackoffDrawsWithinCeiling(t *testing.T) {
	t.Parallel()
	p := flow.RetryPolicy{Base: 100 * time.Millisecond, Cap: time.Minute}
	var ceilings []int64
	spy := func(n int64) int64 { ceilings = append(ceilings, n); return n / 2 }
	for n := 1; n <= 12; n++ {
		delivery.Backoff(p, n, 0, false, spy)
	}
	require.Equal(t, int64(100*time.Millisecond)+1, ceilings[0])
	require.Equal(t, int64(200*time.Millisecond)+1, ceilings[1])
	require.Equal(t, int64(time.Minute)+1, ceilings[11], "never above the cap")
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	k := delivery.IdempotencyKey("web_form", "s-1", "lead", "contact", 0)
	require.Equal(t, k, delivery.IdempotencyKey("web_form", "s-1", "lead", "contact", 0), "deterministic across retries and nodes")
	require.Regexp(t, `^sb_[0-9a-f]{40}$`, k)
	others := []string{
		delivery.IdempotencyKey("web_form", "s-2", "lead", "contact", 0),
		delivery.IdempotencyKey("web_form", "s-1", "lead", "ack", 0),
		delivery.IdempotencyKey("web_form", "s-1", "other", "contact", 0),
		delivery.IdempotencyKey("other", "s-1", "lead", "contact", 0),
		delivery.IdempotencyKey("web_form", "s-1", "lead", "contact", 1),
		// Field boundaries matter: ("ab","c") differs from ("a","bc").
		delivery.IdempotencyKey("web_forms", "-1", "lead", "contact", 0),
	}
	seen := map[string]bool{k: true}
	for _, o := range others {
		require.False(t, seen[o], "key collision")
		seen[o] = true
	}
}
