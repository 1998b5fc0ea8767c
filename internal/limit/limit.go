// Package limit guards each external system on a node: a token bucket
// (rate_limit), a cap on requests in flight (concurrency), a system-wide
// back-off when the system answers 429, and a circuit breaker that holds
// runs (they wait; they are not failed) while a system keeps failing or
// refuses our credentials. Limits are per node: on PostgreSQL with N nodes a
// system sees up to N times the configured rate.
package limit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config are a system's limits. Zero values mean "no limit".
type Config struct {
	// PerSecond is the sustained request rate; Burst the bucket size
	// (default 1, which keeps any one-second window at PerSecond).
	PerSecond float64
	Burst     int
	// Concurrency caps requests in flight.
	Concurrency int
	// CircuitFailures opens the circuit after that many consecutive
	// transient failures; CircuitCooldown is how long it stays open before
	// one probe request is let through. Default cooldown 30s.
	CircuitFailures int
	CircuitCooldown time.Duration
	// AuthProbeEvery is how often a system paused by a 401 or 403 lets one
	// probe request through. Default 1m.
	AuthProbeEvery time.Duration
}

// Outcome is what a call through the gate ended with.
type Outcome int

const (
	// Succeeded: a 2xx (or any answer that is not the system's fault).
	Succeeded Outcome = iota
	// Failed: a transient failure (5xx, timeout, connection error).
	Failed
	// Throttled: the system answered 429; After is its Retry-After.
	Throttled
	// Unauthorized: 401 or 403, the credentials are refused.
	Unauthorized
	// Refused: a permanent answer about the request, not the system (400,
	// 404, 422): it neither trips nor closes the circuit.
	Refused
)

// Hold tells the caller not to call now: put the run back until Until.
type Hold struct {
	Until  time.Time
	Reason string
	// Operator is set when an operator paused the system: nothing is
	// let through until it is resumed, however long that is, and Until
	// is only when to look again. A caller that cannot wait that long (a
	// scheduled poll) skips its work rather than fail it.
	Operator bool
}

func (h *Hold) Error() string { return h.Reason }

// recheck bounds how long a run is held for a paused system; resuming the
// system wakes held runs sooner.
const recheck = 10 * time.Minute

// minHold is the shortest hold: a hold is a write, and a run held until a
// time already past would be claimed and held again at once.
const minHold = time.Second

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// pacing is the share of the configured rate requests are sent at.
const pacing = 0.9

// maxWait is the longest a worker waits for a token in place; a longer
// wait holds the run in the store instead, so the worker can serve other
// systems meanwhile.
const maxWait = 2 * time.Second

// Gate guards one system. It is safe for concurrent use.
type Gate struct {
	name    string
	cfg     Config
	limiter *rate.Limiter // nil without a rate limit
	slots   chan struct{} // nil without a concurrency cap
	nowFunc func() time.Time

	mu          sync.Mutex // guards the fields below
	backoff     time.Time  // a 429 asked everyone to wait until then
	failures    int        // consecutive transient failures
	openUntil   time.Time  // circuit open: hold until then, then probe
	probing     bool       // a probe request is in flight
	paused      bool       // credentials refused, or an operator paused it
	noProbe     bool       // an operator's pause: no probes until Resume
	pausedUntil time.Time  // next auth probe
	refusals    uint64     // 401/403 answers seen here (see Mark)
	recorded    uint64     // how many of them are known recorded in the store
	lifts       uint64     // credential pauses lifted here by a success (see Mark)
	rateNow     float64    // effective rate after 429s (≤ cfg.PerSecond)
}

// New returns the gate of system name. nowFunc may be nil (time.Now).
func New(name string, cfg Config, nowFunc func() time.Time) *Gate {
	if nowFunc == nil {
		nowFunc = time.Now
	}
	if cfg.CircuitCooldown <= 0 {
		cfg.CircuitCooldown = 30 * time.Second
	}
	if cfg.AuthProbeEvery <= 0 {
		cfg.AuthProbeEvery = time.Minute
	}
	// Requests are paced at 90% of the configured rate: a request's trip
	// takes a little more or less time each time, and at exactly the rate
	// that jitter would now and then put one request too many into a
	// one-second window as the system counts it (seen at 95% under load).
	cfg.PerSecond *= pacing
	g := &Gate{name: name, cfg: cfg, nowFunc: nowFunc, rateNow: cfg.PerSecond}
	if cfg.PerSecond > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(cfg.PerSecond), max(1, cfg.Burst))
	}
	if cfg.Concurrency > 0 {
		g.slots = make(chan struct{}, cfg.Concurrency)
	}
	return g
}

// Acquire waits for the system to accept a request. It returns a *Hold
// error when the run should go back to the queue instead (circuit open,
// credentials refused, a 429 back-off or a long rate-limit wait), or the
// context's error. On success the caller makes its call and then calls
// done with the outcome. done reports whether that outcome lifted the
// system's pause: a success while its credentials were refused (the
// probe's, or a call's admitted before the refusal). An operator's pause
// is lifted only by Resume. Reading the state before and after the call
// instead would race with Pause and Resume (another node's pause, an
// operator's resume) applied in between.
func (g *Gate) Acquire(ctx context.Context) (done func(Outcome, time.Duration) (resumed bool), err error) {
	h, probe := g.admit()
	if h != nil {
		return nil, h
	}
	if g.limiter != nil {
		r := g.limiter.Reserve()
		if d := r.Delay(); d > maxWait {
			r.Cancel()
			g.endProbe(probe)
			return nil, &Hold{Until: g.nowFunc().Add(d), Reason: fmt.Sprintf("system %s: rate limit (%.3g/s)", g.name, g.limiter.Limit())}
		} else if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				g.endProbe(probe)
				return nil, ctx.Err()
			}
		}
	}
	if g.slots != nil {
		select {
		case g.slots <- struct{}{}:
		case <-ctx.Done():
			g.endProbe(probe)
			return nil, ctx.Err()
		}
	}
	return func(o Outcome, retryAfter time.Duration) bool {
		if g.slots != nil {
			<-g.slots
		}
		return g.record(o, retryAfter, probe)
	}, nil
}

// admit applies the circuit, the auth pause and the 429 back-off. probe
// reports that the admitted request is the one probe of an open circuit or
// a paused system: only its end lets another probe through.
func (g *Gate) admit() (hold *Hold, probe bool) {
	now := g.nowFunc()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.paused:
		if g.noProbe || now.Before(g.pausedUntil) || g.probing {
			// Held runs sleep until the next probe (at most recheck, for a
			// pause that has no probes); resuming the system wakes them
			// in the store at once. Never until a time already past (a
			// probe in flight): they would be claimed and held again in a
			// tight loop.
			if g.noProbe {
				return &Hold{Until: now.Add(recheck), Reason: fmt.Sprintf("system %s paused by an operator", g.name), Operator: true}, false
			}
			until := maxTime(minTime(g.pausedUntil, now.Add(recheck)), now.Add(minHold))
			return &Hold{Until: maxTime(until, g.backoff), Reason: fmt.Sprintf("system %s paused: credentials refused (401/403); probing every %s", g.name, g.cfg.AuthProbeEvery)}, false
		}
	case !g.openUntil.IsZero():
		if now.Before(g.openUntil) || g.probing {
			return &Hold{Until: maxTime(maxTime(g.openUntil, g.backoff), now.Add(minHold)), Reason: fmt.Sprintf("system %s: circuit open after %d consecutive failures", g.name, g.failures)}, false
		}
	}
	// A 429 asked us to wait: a probe waits too (a probe that was itself
	// answered 429 leaves the circuit or the pause as it was, due for
	// another probe at once).
	if now.Before(g.backoff) {
		return &Hold{Until: g.backoff, Reason: fmt.Sprintf("system %s: backing off after 429", g.name)}, false
	}
	if g.paused || !g.openUntil.IsZero() {
		g.probing = true // this request is the probe
		return nil, true
	}
	return nil, false
}

// endProbe lets another probe through when the probe ends without a call.
func (g *Gate) endProbe(probe bool) {
	if !probe {
		return
	}
	g.mu.Lock()
	g.probing = false
	g.mu.Unlock()
}

// record updates the gate's state with a call's outcome and reports
// whether it lifted the pause. Only the probe's own end clears probing: a
// call admitted before the circuit opened that ends while the probe is in
// flight must not let a second probe through.
func (g *Gate) record(o Outcome, retryAfter time.Duration, probe bool) (resumed bool) {
	now := g.nowFunc()
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
	}
	switch o {
	case Succeeded:
		g.failures, g.openUntil = 0, time.Time{}
		// A success shows the credentials work; it does not lift an
		// operator's pause (a call admitted before it, or the probe of
		// a credential pause it replaced): only Resume does.
		if g.paused && !g.noProbe {
			g.paused, resumed = false, true
			g.lifts++
		}
		g.recover()
	case Refused:
		// The request was wrong, not the system: no change.
	case Failed:
		g.failures++
		if g.cfg.CircuitFailures > 0 && g.failures >= g.cfg.CircuitFailures {
			g.openUntil = now.Add(g.cfg.CircuitCooldown)
		}
	case Throttled:
		// Bounded like a pause (recheck): a Retry-After of a day (a daily
		// quota), a far date or a garbled number would otherwise hold
		// every run of the system that long, holds are not attempts (no
		// dead letter), and nothing but time would lift it. After it, one
		// call asks again.
		g.backoff = now.Add(min(max(retryAfter, time.Second), recheck))
		g.slowDown()
	case Unauthorized:
		g.paused = true
		g.pausedUntil = now.Add(g.cfg.AuthProbeEvery)
		g.refusals++
	}
	return resumed
}

// slowDown halves the effective rate (to a floor of a tenth of the
// configured one) after a 429.
func (g *Gate) slowDown() {
	if g.limiter == nil {
		return
	}
	g.rateNow = max(g.rateNow/2, g.cfg.PerSecond/10)
	g.limiter.SetLimit(rate.Limit(g.rateNow))
}

// recover raises the effective rate back towards the configured one by 5%
// per successful call.
func (g *Gate) recover() {
	if g.limiter == nil || g.rateNow >= g.cfg.PerSecond {
		return
	}
	g.rateNow = min(g.rateNow*1.05, g.cfg.PerSecond)
	g.limiter.SetLimit(rate.Limit(g.rateNow))
}

// Mark is where a gate's refusals (401/403 answers), their records in
// the store and its lifted pauses stood at one moment. Taken before a read
// of the store's pauses, it tells Pause and Resume which refusals the read
// could have seen recorded, and which lifts it could not have seen; taken
// after a refusal and before recording it, it tells Recorded which
// refusals the record covers.
type Mark struct{ refusals, recorded, lifts uint64 }

// Mark returns where the gate's refusals, their records and its lifts
// stand now.
func (g *Gate) Mark() Mark {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Mark{refusals: g.refusals, recorded: g.recorded, lifts: g.lifts}
}

// Recorded tells the gate that the pause of the refusals before m (taken
// after them, before the record) is recorded in the store: a read begun
// after now that finds no pause may lift it.
func (g *Gate) Recorded(m Mark) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recorded = max(g.recorded, m.refusals)
}

// Pause applies a pause that a read of the store, begun at m, found: as if
// the system had answered 401 (another node saw the refusal), the next
// probe after AuthProbeEvery; with probe false (an operator paused it), no
// probe until Resume. The gate takes the kind of pause the read found,
// whatever kind it had. The refusals before m are recorded (their own
// record, or a pause there already).
//
// A credential pause is not applied when a success here lifted one since
// m: the read began before the lift and may show the very pause it lifted
// (its lifting in the store comes just after), and applying it would hold
// the system's runs until the next read. If the store's pause stays (its
// lifting failed, or another node paused the system again), the next read
// finds it.
//
// It reports whether it turned an operator's pause into a credential
// pause: the runs this gate held for the operator's look again only after
// recheck (a resume wakes them), and until then none of them comes to be
// the probe. The caller wakes them, as for a resume.
func (g *Gate) Pause(m Mark, probe bool) (reprobed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recorded = max(g.recorded, m.refusals)
	if !probe {
		// An operator's pause, new or replacing a credential pause: no
		// probes until Resume.
		g.paused, g.noProbe = true, true
		return false
	}
	if g.lifts != m.lifts {
		return false // a read from before this gate's lift (see above)
	}
	// A credential pause where this gate has an operator's: the operator
	// resumed the system and a refusal paused it again (another node's),
	// both between two reads here. A store never holds a credential pause
	// over an operator's (the operator's replaces it), so the operator's
	// is gone: keeping noProbe would stop the probes on this node for
	// good, its held runs saying an operator paused the system.
	if !g.paused || g.noProbe {
		reprobed = g.noProbe
		g.paused, g.noProbe, g.pausedUntil = true, false, g.nowFunc().Add(g.cfg.AuthProbeEvery)
	}
	return reprobed
}

// Resume lifts the pause at once, because a read of the store begun at m
// found the system not paused (an operator resumed it, or another node's
// probe succeeded), and reports whether it did. A 429's back-off stays: it
// is the system's own answer, which no pause or resume is about, and it is
// bounded (recheck).
//
// The pause stays, as a credential pause (probed), when the read could not
// have seen it: a refusal this node saw pauses the gate at once and is
// recorded in the store just after, so a read begun after the refusal, or
// before its record committed, finds no pause and says nothing about it.
// Lifting it would send calls that draw more 401s. The next read finds the
// record; if recording failed, the probe's success lifts the pause.
func (g *Gate) Resume(m Mark) (resumed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return false
	}
	// Whatever stays, it is not an operator's pause (the store has none):
	// probes go, so a pause whose record failed does not hold forever.
	g.noProbe = false
	if g.refusals != m.refusals || m.recorded < m.refusals {
		return false
	}
	g.paused = false
	return true
}

// State describes the gate for logs and operators.
type State struct {
	Paused      bool
	CircuitOpen bool
	Rate        float64
	Failures    int
}

// State returns the gate's current state.
func (g *Gate) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return State{Paused: g.paused, CircuitOpen: !g.openUntil.IsZero(), Rate: g.rateNow, Failures: g.failures}
}
