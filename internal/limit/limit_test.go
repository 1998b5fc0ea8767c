package limit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/limit"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newClock() *clock { return &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)} }

func requireHold(t *testing.T, g *limit.Gate) *limit.Hold {
	t.Helper()
	_, err := g.Acquire(t.Context())
	var h *limit.Hold
	require.ErrorAs(t, err, &h)
	return h
}

func requireAdmit(t *testing.T, g *limit.Gate) func(limit.Outcome, time.Duration) bool {
	t.Helper()
	done, err := g.Acquire(t.Context())
	require.NoError(t, err)
	return done
}

func TestCircuit(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{CircuitFailures: 3, CircuitCooldown: 30 * time.Second}, c.Now)
	for range 3 {
		requireAdmit(t, g)(limit.Failed, 0)
	}
	h := requireHold(t, g)
	require.Equal(t, c.Now().Add(30*time.Second), h.Until)
	require.Contains(t, h.Reason, "circuit open")

	c.Add(30 * time.Second)
	probe := requireAdmit(t, g) // the one probe
	requireHold(t, g)           // others wait while it runs
	probe(limit.Failed, 0)
	requireHold(t, g) // failed probe: open again

	c.Add(30 * time.Second)
	requireAdmit(t, g)(limit.Succeeded, 0)
	requireAdmit(t, g)(limit.Succeeded, 0) // closed
	require.False(t, g.State().CircuitOpen)
}

func TestRefusedRequestsDoNotTrip(t *testing.T) {
	t.Parallel()
	g := limit.New("crm", limit.Config{CircuitFailures: 2}, newClock().Now)
	for range 5 {
		requireAdmit(t, g)(limit.Refused, 0)
	}
	requireAdmit(t, g)(limit.Succeeded, 0)
}

func TestAuthPause(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	requireAdmit(t, g)(limit.Unauthorized, 0)
	h := requireHold(t, g)
	require.Contains(t, h.Reason, "credentials refused")
	require.True(t, g.State().Paused)
	c.Add(time.Minute)
	requireAdmit(t, g)(limit.Succeeded, 0) // the probe succeeds: resumed
	require.False(t, g.State().Paused)
	requireAdmit(t, g)(limit.Succeeded, 0)
}

func TestThrottleBacksOffAndSlowsDown(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{PerSecond: 100}, c.Now)
	require.InDelta(t, 90, g.State().Rate, 0.001, "paced at 90% of the configured rate")
	requireAdmit(t, g)(limit.Throttled, 5*time.Second)
	h := requireHold(t, g)
	require.Equal(t, c.Now().Add(5*time.Second), h.Until)
	require.InDelta(t, 45, g.State().Rate, 0.001, "a 429 halves the rate")
	c.Add(5 * time.Second)
	requireAdmit(t, g)(limit.Succeeded, 0)
	require.InDelta(t, 47.25, g.State().Rate, 0.001, "and it recovers 5% per success")
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	g := limit.New("crm", limit.Config{Concurrency: 2}, nil)
	a := requireAdmit(t, g)
	requireAdmit(t, g)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := g.Acquire(ctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "a third request waits for a slot")
	a(limit.Succeeded, 0)
	requireAdmit(t, g)
}

func TestLongRateWaitHoldsTheRun(t *testing.T) {
	t.Parallel()
	g := limit.New("crm", limit.Config{PerSecond: 0.1}, nil) // one every 10 s
	requireAdmit(t, g)(limit.Succeeded, 0)
	h := requireHold(t, g)
	require.Contains(t, h.Reason, "rate limit")
	require.Greater(t, time.Until(h.Until), 5*time.Second)
}

// TestHoldNeverInThePast: while a probe is in flight after the cooldown,
// other runs are held into the future, not until a time already past
// (which would have them claimed and held again in a tight loop).
func TestHoldNeverInThePast(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{CircuitFailures: 1, CircuitCooldown: 10 * time.Second}, c.Now)
	requireAdmit(t, g)(limit.Failed, 0)
	c.Add(time.Minute)
	requireAdmit(t, g) // the probe, still in flight
	h := requireHold(t, g)
	require.False(t, h.Until.Before(c.Now().Add(time.Second)), "held until %s at %s", h.Until, c.Now())

	p := limit.New("sms", limit.Config{AuthProbeEvery: time.Second}, c.Now)
	requireAdmit(t, p)(limit.Unauthorized, 0)
	c.Add(time.Minute)
	requireAdmit(t, p) // the auth probe, in flight
	h = requireHold(t, p)
	require.False(t, h.Until.Before(c.Now().Add(time.Second)), "held until %s at %s", h.Until, c.Now())
}

// TestThrottleBackoffIsBounded: a 429 asking to wait a day (or 292 years:
// a garbled Retry-After) holds the system's runs for at most the recheck
// interval.
func TestThrottleBackoffIsBounded(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{}, c.Now)
	requireAdmit(t, g)(limit.Throttled, 292*365*24*time.Hour)
	h := requireHold(t, g)
	require.Equal(t, c.Now().Add(10*time.Minute), h.Until)
	c.Add(10 * time.Minute)
	requireAdmit(t, g)(limit.Throttled, 24*time.Hour)
	h = requireHold(t, g)
	require.Equal(t, c.Now().Add(10*time.Minute), h.Until)
	c.Add(10 * time.Minute)
	requireAdmit(t, g)(limit.Succeeded, 0)
}

// TestResumeKeepsThrottleBackoff: a 429's back-off is the system's own
// answer, not a pause: lifting a pause (an operator's resume, or another
// node's probe, read from the store) does not send calls into it.
func TestResumeKeepsThrottleBackoff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// pause pauses g during the back-off; early is a call admitted
		// before the 429, in flight.
		pause func(g *limit.Gate, early func(limit.Outcome, time.Duration) bool)
	}{
		{"an operator's pause", func(g *limit.Gate, early func(limit.Outcome, time.Duration) bool) {
			early(limit.Succeeded, 0)
			readPaused(g, false)
		}},
		{"a credential pause", func(g *limit.Gate, early func(limit.Outcome, time.Duration) bool) {
			early(limit.Unauthorized, 0)
			readPaused(g, true) // its record
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
			early := requireAdmit(t, g)
			requireAdmit(t, g)(limit.Throttled, 5*time.Minute)
			backoff := c.Now().Add(5 * time.Minute)
			tt.pause(g, early)
			require.True(t, g.State().Paused)
			c.Add(time.Minute)
			g.Resume(g.Mark())
			require.False(t, g.State().Paused)
			h := requireHold(t, g)
			require.Equal(t, backoff, h.Until)
			require.Contains(t, h.Reason, "429")
			c.Add(4 * time.Minute)
			requireAdmit(t, g)(limit.Succeeded, 0)
		})
	}
}

// TestOperatorPauseOverridesProbing: an operator's pause over a credential
// pause stops the probes until Resume. Its holds say it is an operator's
// (a scheduled poll skips its run rather than fail it); a credential
// pause's do not, and last at most until the next probe.
func TestOperatorPauseOverridesProbing(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	requireAdmit(t, g)(limit.Unauthorized, 0)
	h := requireHold(t, g)
	require.False(t, h.Operator, "a credential pause")
	require.False(t, h.Until.After(c.Now().Add(time.Minute)), "held until the next probe at most")
	readPaused(g, false)
	c.Add(time.Hour)
	h = requireHold(t, g)
	require.Contains(t, h.Reason, "paused by an operator")
	require.True(t, h.Operator)
	require.False(t, h.Until.Before(c.Now().Add(time.Minute)), "held for a while, not re-claimed at once")
	g.Resume(g.Mark())
	requireAdmit(t, g)(limit.Succeeded, 0)
}

// TestCredentialPauseReplacesOperatorPause: an operator resumes a system
// this node has the operator's pause of, and another node's 401 pauses it
// again before this node reads the pauses. The read finds a credential
// pause: it is probed like one (its holds no longer say an operator paused
// it), rather than held without probes for good.
func TestCredentialPauseReplacesOperatorPause(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	readPaused(g, false)
	require.True(t, requireHold(t, g).Operator)

	readPaused(g, true)
	h := requireHold(t, g)
	require.False(t, h.Operator, "a credential pause")
	require.NotContains(t, h.Reason, "operator")
	c.Add(time.Minute)
	requireAdmit(t, g)(limit.Succeeded, 0) // the probe
	require.False(t, g.State().Paused)

	readPaused(g, false) // and an operator's pause still replaces it
	c.Add(time.Hour)
	require.True(t, requireHold(t, g).Operator)
}

// TestReadBeforeLiftKeepsItLifted: a read of the store's pauses begins,
// a probe's success lifts the credential pause here, and the read ends
// showing the pause (the store's lifting comes just after). The read does
// not pause the gate again; a read begun after the lift that still finds
// the pause (its lifting failed) does.
func TestReadBeforeLiftKeepsItLifted(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	requireAdmit(t, g)(limit.Unauthorized, 0)
	readPaused(g, true) // its record
	c.Add(time.Minute)

	m := g.Mark() // the read begins
	require.True(t, requireAdmit(t, g)(limit.Succeeded, 0), "the probe lifts the pause")
	g.Pause(m, true) // and ends showing it
	require.False(t, g.State().Paused)
	requireAdmit(t, g)(limit.Succeeded, 0)

	readPaused(g, true)
	require.True(t, g.State().Paused, "a read begun after the lift")
	requireHold(t, g)
}

// TestOneProbeAtATime: a call admitted before the circuit opened that ends
// while the probe is in flight does not let a second probe through.
func TestOneProbeAtATime(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{CircuitFailures: 2, CircuitCooldown: 30 * time.Second}, c.Now)
	late := requireAdmit(t, g) // in flight while the circuit opens
	requireAdmit(t, g)(limit.Failed, 0)
	requireAdmit(t, g)(limit.Failed, 0)
	requireHold(t, g)

	c.Add(30 * time.Second)
	probe := requireAdmit(t, g)
	late(limit.Refused, 0) // the old call ends now (a 400 about its request)
	requireHold(t, g)      // still one probe
	probe(limit.Succeeded, 0)
	requireAdmit(t, g)(limit.Succeeded, 0)
}

// TestProbeHonoursThrottleBackoff: a probe answered 429 leaves the circuit
// open (or the system paused) and due for another probe, but the next
// probe waits for the Retry-After like every other call.
func TestProbeHonoursThrottleBackoff(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{CircuitFailures: 1, CircuitCooldown: 10 * time.Second}, c.Now)
	requireAdmit(t, g)(limit.Failed, 0)
	c.Add(10 * time.Second)
	requireAdmit(t, g)(limit.Throttled, time.Minute) // the probe: 429
	backoff := c.Now().Add(time.Minute)
	c.Add(10 * time.Second) // the cooldown is over, the back-off is not
	h := requireHold(t, g)
	require.Equal(t, backoff, h.Until)
	c.Add(50 * time.Second)
	requireAdmit(t, g)(limit.Succeeded, 0) // the probe after the back-off
	require.False(t, g.State().CircuitOpen)

	p := limit.New("sms", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	requireAdmit(t, p)(limit.Unauthorized, 0)
	c.Add(time.Minute)
	requireAdmit(t, p)(limit.Throttled, 5*time.Minute) // the auth probe: 429
	backoff = c.Now().Add(5 * time.Minute)
	c.Add(time.Minute) // the next probe's time, inside the back-off
	h = requireHold(t, p)
	require.Equal(t, backoff, h.Until)
	c.Add(4 * time.Minute)
	requireAdmit(t, p)(limit.Succeeded, 0)
	require.False(t, p.State().Paused)
}

// TestSuccessKeepsOperatorPause: a call in flight when an operator pauses
// the system (the probe of a credential pause, or any call) succeeds: the
// operator's pause stays until Resume.
func TestSuccessKeepsOperatorPause(t *testing.T) {
	t.Parallel()
	c := newClock()
	g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	call := requireAdmit(t, g)
	readPaused(g, false)
	call(limit.Succeeded, 0)
	require.True(t, g.State().Paused)
	requireHold(t, g)

	p := limit.New("sms", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
	requireAdmit(t, p)(limit.Unauthorized, 0)
	c.Add(time.Minute)
	probe := requireAdmit(t, p)
	readPaused(p, false)
	probe(limit.Succeeded, 0)
	require.True(t, p.State().Paused)
	requireHold(t, p)
	p.Resume(p.Mark())
	requireAdmit(t, p)(limit.Succeeded, 0)
}

// TestDoneReportsResume: done reports whether the call's outcome lifted
// the system's pause, so the caller can lift it on every node. A resume
// or an operator's pause applied while the call was in flight is not
// taken for this call's doing.
func TestDoneReportsResume(t *testing.T) {
	t.Parallel()
	type call = func(limit.Outcome, time.Duration) bool
	for _, tt := range []struct {
		name string
		// admit sets the gate up and admits the call.
		admit func(t *testing.T, c *clock, g *limit.Gate) call
		// meanwhile, when set, happens while the call is in flight.
		meanwhile  func(g *limit.Gate)
		outcome    limit.Outcome
		want       bool
		wantPaused bool
	}{
		{
			name:  "a probe's success lifts a credential pause",
			admit: probe, outcome: limit.Succeeded, want: true, wantPaused: false,
		},
		{
			name:  "a probe's refusal keeps it",
			admit: probe, outcome: limit.Unauthorized, want: false, wantPaused: true,
		},
		{
			name: "a success admitted before the refusal lifts it (the credentials work)",
			admit: func(t *testing.T, _ *clock, g *limit.Gate) call {
				early := requireAdmit(t, g)
				requireAdmit(t, g)(limit.Unauthorized, 0)
				return early
			},
			outcome: limit.Succeeded, want: true, wantPaused: false,
		},
		{
			name:  "a probe's success keeps an operator's pause applied meanwhile",
			admit: probe, meanwhile: func(g *limit.Gate) { readPaused(g, false) },
			outcome: limit.Succeeded, want: false, wantPaused: true,
		},
		{
			name:  "a probe's success after a resume meanwhile lifts nothing",
			admit: probe, meanwhile: func(g *limit.Gate) {
				readPaused(g, true) // a read found the pause recorded
				g.Resume(g.Mark())  // and a later one found it lifted
			},
			outcome: limit.Succeeded, want: false, wantPaused: false,
		},
		{
			name:    "a success while not paused",
			admit:   func(t *testing.T, _ *clock, g *limit.Gate) call { return requireAdmit(t, g) },
			outcome: limit.Succeeded, want: false, wantPaused: false,
		},
		{
			name: "a probe's success closing the circuit (not a pause)",
			admit: func(t *testing.T, c *clock, g *limit.Gate) call {
				requireAdmit(t, g)(limit.Failed, 0)
				c.Add(30 * time.Second)
				return requireAdmit(t, g)
			},
			outcome: limit.Succeeded, want: false, wantPaused: false,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute, CircuitFailures: 1, CircuitCooldown: 30 * time.Second}, c.Now)
			done := tt.admit(t, c, g)
			if tt.meanwhile != nil {
				tt.meanwhile(g)
			}
			require.Equal(t, tt.want, done(tt.outcome, 0))
			require.Equal(t, tt.wantPaused, g.State().Paused)
		})
	}
}

// probe pauses g as if its credentials were refused and admits the probe.
func probe(t *testing.T, c *clock, g *limit.Gate) func(limit.Outcome, time.Duration) bool {
	t.Helper()
	requireAdmit(t, g)(limit.Unauthorized, 0)
	c.Add(time.Minute)
	return requireAdmit(t, g)
}

// readPaused applies a pause that a read of the store, begun now, found.
func readPaused(g *limit.Gate, probe bool) { g.Pause(g.Mark(), probe) }

// TestResumeWaitsForRecord: a refusal pauses the gate at once, and its
// record reaches the store just after. A read of the store that could not
// see the record (begun after the refusal, or before the record
// committed) finds no pause: that must not lift it, or calls would go out
// and draw more 401s. A read begun once the record is known to be in (the
// recording said so, or an earlier read found it) may.
func TestResumeWaitsForRecord(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// read makes the refusals (refuse ends a call admitted before
		// with a 401) and whatever recording and earlier reads the case
		// has, and returns the mark of the read that finds no pause.
		read func(g *limit.Gate, refuse func()) limit.Mark
		want bool
	}{
		{"not recorded", func(g *limit.Gate, refuse func()) limit.Mark {
			refuse()
			return g.Mark()
		}, false},
		{"recorded after the read began", func(g *limit.Gate, refuse func()) limit.Mark {
			refuse()
			m := g.Mark()
			g.Recorded(g.Mark())
			return m
		}, false},
		{"recorded before the read began", func(g *limit.Gate, refuse func()) limit.Mark {
			refuse()
			g.Recorded(g.Mark())
			return g.Mark()
		}, true},
		{"refused after the read began", func(g *limit.Gate, refuse func()) limit.Mark {
			readPaused(g, true) // another node's pause
			m := g.Mark()
			refuse()
			return m
		}, false},
		{"an earlier read begun before the refusal found a pause", func(g *limit.Gate, refuse func()) limit.Mark {
			m := g.Mark()
			refuse()
			g.Pause(m, true)
			return g.Mark()
		}, false},
		{"an earlier read begun after it found it", func(g *limit.Gate, refuse func()) limit.Mark {
			refuse()
			readPaused(g, true)
			return g.Mark()
		}, true},
		{"an earlier read begun after it found an operator's pause", func(g *limit.Gate, refuse func()) limit.Mark {
			refuse()
			readPaused(g, false)
			return g.Mark()
		}, true},
		{"refused while an operator's pause was read, not since", func(g *limit.Gate, refuse func()) limit.Mark {
			readPaused(g, false) // a call was in flight
			refuse()
			return g.Mark() // the operator resumed the system
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			g := limit.New("crm", limit.Config{AuthProbeEvery: time.Minute}, c.Now)
			early := requireAdmit(t, g)
			m := tt.read(g, func() { early(limit.Unauthorized, 0) })
			require.True(t, g.State().Paused)
			require.Equal(t, tt.want, g.Resume(m))
			require.Equal(t, !tt.want, g.State().Paused)
			if !tt.want {
				// What stays is probed (an operator's pause the store no
				// longer has included), so it cannot hold for good.
				c.Add(time.Minute)
				require.True(t, requireAdmit(t, g)(limit.Succeeded, 0), "the probe lifts it")
			}
		})
	}
}
