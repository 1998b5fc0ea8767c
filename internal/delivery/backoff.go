package delivery

import (
	"math/rand/v2"
	"time"

	"github.com/switchboard-dev/switchboard/internal/flow"
)

// Backoff returns the wait before the attempt after attempt number n (1 for
// the first attempt): "full jitter", a uniform draw from [0, min(cap,
// base·2^(n-1))], which spreads retries of many runs that failed together
// instead of having them hammer a recovering system in waves. A Retry-After
// from the remote side replaces the draw, capped by the policy's cap.
// randN draws uniformly from [0, n); tests pass a fixed one.
func Backoff(p flow.RetryPolicy, n int, retryAfter time.Duration, hasRetryAfter bool, randN func(int64) int64) time.Duration {
	if hasRetryAfter {
		return min(max(retryAfter, 0), p.Cap)
	}
	ceiling := p.Base
	for i := 1; i < n && ceiling < p.Cap; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.Cap)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(randN(int64(ceiling) + 1))
}

func defaultRandN(n int64) int64 { return rand.Int64N(n) }
