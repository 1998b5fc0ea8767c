package alert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// errSkipped marks a rule left unevaluated because a statistic it needs
// could not be read (that error is reported once, by its reader).
var errSkipped = errors.New("statistics unavailable")

// inputs are one evaluation's statistics, each read once and shared by
// the rules that need it.
type inputs struct {
	m         *Manager
	now       time.Time
	queues    []store.FlowStats
	queueErr  error
	attempts  map[time.Duration][]store.AttemptCount
	polls     map[string]store.PollState
	pollsErr  error
	pollsRead bool
}

// observe applies rule i (not dead_letter) to each of its subjects.
func (in *inputs) observe(ctx context.Context, i int, r rule.Rule) ([]observation, error) {
	switch r.Kind {
	case rule.QueueDepth, rule.OldestPending, rule.RisingBacklog:
		if in.queueErr != nil {
			return nil, in.queueErr
		}
	}
	var flows []string
	for _, q := range in.queues {
		flows = append(flows, q.Flow)
	}
	switch r.Kind {
	case rule.QueueDepth:
		return in.each(i, r.Flow, flows, func(f string) observation { return queueDepth(r, f, in.queue(f)) }), nil
	case rule.OldestPending:
		return in.each(i, r.Flow, flows, func(f string) observation { return oldestPending(r, f, in.queue(f), in.now) }), nil
	case rule.LagP95:
		lags := in.m.lagsSince(in.now.Add(-r.Window))
		var seen []string
		for f := range lags {
			seen = append(seen, f)
		}
		return in.each(i, r.Flow, seen, func(f string) observation { return lagP95(r, f, lags[f]) }), nil
	case rule.ErrorRate:
		counts, err := in.attemptStats(ctx, r.Window)
		if err != nil {
			return nil, err
		}
		bySystem := map[string][2]int{} // failed, total
		var systems []string
		for _, c := range counts {
			if c.System == "" {
				continue
			}
			n := bySystem[c.System]
			if c.Outcome != store.AttemptSucceeded {
				n[0] += c.Count
			}
			n[1] += c.Count
			bySystem[c.System] = n
			systems = append(systems, c.System)
		}
		return in.each(i, r.System, systems, func(s string) observation {
			return errorRate(r, s, bySystem[s][0], bySystem[s][1])
		}), nil
	case rule.RisingBacklog:
		depths := in.m.depthHistory()
		var seen []string
		for f := range depths {
			seen = append(seen, f)
		}
		return in.each(i, r.Flow, seen, func(f string) observation { return risingBacklog(r, f, depths[f], in.now) }), nil
	case rule.SilentSource:
		last, ok, err := in.m.cfg.Stats.LastEventAt(ctx, r.Source)
		if err != nil {
			return nil, fmt.Errorf("last event of %s: %w", r.Source, err)
		}
		return []observation{silentSource(r, last, ok, in.m.started, in.now)}, nil
	case rule.PollCursor, rule.PollFailing, rule.BackstopFound:
		polls, err := in.pollStates(ctx)
		if err != nil {
			return nil, err
		}
		switch r.Kind {
		case rule.PollCursor:
			return []observation{pollCursor(r, polls[r.Source], in.m.started, in.now)}, nil
		case rule.BackstopFound:
			return []observation{backstopFound(r, polls[r.Source])}, nil
		}
		var names []string
		for name := range polls {
			// A backfill keeps its state under "backfill:NAME"; source
			// names cannot hold a colon.
			if !strings.Contains(name, ":") {
				names = append(names, name)
			}
		}
		return in.each(i, r.Source, names, func(s string) observation { return pollFailing(r, polls[s]) }), nil
	}
	return nil, fmt.Errorf("unknown rule kind %q", r.Kind)
}

// each observes fixed, or, when fixed is "", every subject present in the
// statistics and every subject rule i has an alert for (so an alert
// resolves when its subject drops out of the statistics).
func (in *inputs) each(i int, fixed string, present []string, f func(string) observation) []observation {
	subjects := []string{fixed}
	if fixed == "" {
		subjects = append(present, in.m.activeSubjects(i)...)
		slices.Sort(subjects)
		subjects = slices.Compact(subjects)
	}
	out := make([]observation, 0, len(subjects))
	for _, s := range subjects {
		out = append(out, f(s))
	}
	return out
}

// queue returns flow's queue statistics, zero when it has none.
func (in *inputs) queue(flow string) store.FlowStats {
	for _, q := range in.queues {
		if q.Flow == flow {
			return q
		}
	}
	return store.FlowStats{Flow: flow}
}

// pollStates reads the timed sources' states once per evaluation.
func (in *inputs) pollStates(ctx context.Context) (map[string]store.PollState, error) {
	if !in.pollsRead {
		in.pollsRead = true
		list, err := in.m.cfg.Stats.ListPollStates(ctx)
		if err != nil {
			in.pollsErr = fmt.Errorf("poll states: %w", err)
		}
		in.polls = map[string]store.PollState{}
		for _, p := range list {
			in.polls[p.Source] = p
		}
	}
	return in.polls, in.pollsErr
}

func (in *inputs) attemptStats(ctx context.Context, window time.Duration) ([]store.AttemptCount, error) {
	if c, ok := in.attempts[window]; ok {
		return c, nil
	}
	c, err := in.m.cfg.Stats.AttemptStats(ctx, in.now.Add(-window))
	if err != nil {
		return nil, fmt.Errorf("attempt stats: %w", err)
	}
	if in.attempts == nil {
		in.attempts = map[time.Duration][]store.AttemptCount{}
	}
	in.attempts[window] = c
	return c, nil
}

func queueDepth(r rule.Rule, flow string, q store.FlowStats) observation {
	o := observation{subject: flow, holds: q.Waiting > r.Depth, details: map[string]any{
		"flow": flow, "waiting": q.Waiting, "above": r.Depth, "for_seconds": r.For.Seconds(),
	}}
	if o.holds {
		held := ""
		if r.For > 0 {
			held = " for " + fmtDuration(r.For)
		}
		o.summary = fmt.Sprintf("queue depth of flow %s is %s (above %s%s)", flow, fmtInt(q.Waiting), fmtInt(r.Depth), held)
	} else {
		o.summary = fmt.Sprintf("queue depth of flow %s is %s (limit %s)", flow, fmtInt(q.Waiting), fmtInt(r.Depth))
	}
	return o
}

func oldestPending(r rule.Rule, flow string, q store.FlowStats, now time.Time) observation {
	var age time.Duration
	if q.Waiting > 0 {
		age = now.Sub(q.OldestWaiting)
	}
	o := observation{subject: flow, holds: q.Waiting > 0 && age > r.Age, details: map[string]any{
		"flow": flow, "waiting": q.Waiting, "oldest_age_seconds": age.Seconds(), "above_seconds": r.Age.Seconds(),
	}}
	switch {
	case o.holds:
		o.summary = fmt.Sprintf("oldest pending run of flow %s has waited %s (above %s); %s runs waiting",
			flow, fmtDuration(age), fmtDuration(r.Age), fmtInt(q.Waiting))
	case q.Waiting == 0:
		o.summary = fmt.Sprintf("no runs waiting in flow %s", flow)
	default:
		o.summary = fmt.Sprintf("oldest pending run of flow %s has waited %s (limit %s)", flow, fmtDuration(age), fmtDuration(r.Age))
	}
	return o
}

func lagP95(r rule.Rule, flow string, lags []time.Duration) observation {
	p := p95(lags)
	o := observation{subject: flow, holds: len(lags) > 0 && p > r.Age, details: map[string]any{
		"flow": flow, "p95_seconds": p.Seconds(), "above_seconds": r.Age.Seconds(),
		"window_seconds": r.Window.Seconds(), "runs": len(lags),
	}}
	switch {
	case o.holds:
		o.summary = fmt.Sprintf("p95 lag (event received to run finished) of flow %s is %s over the last %s (above %s; %s runs)",
			flow, fmtDuration(p), fmtDuration(r.Window), fmtDuration(r.Age), fmtInt(len(lags)))
	case len(lags) == 0:
		// Nothing finishing may mean everything is stuck: not a recovery.
		o.unknown = true
		o.summary = fmt.Sprintf("no runs of flow %s finished in the last %s", flow, fmtDuration(r.Window))
	default:
		o.summary = fmt.Sprintf("p95 lag of flow %s is %s over the last %s (limit %s)", flow, fmtDuration(p), fmtDuration(r.Window), fmtDuration(r.Age))
	}
	return o
}

// p95 is the nearest-rank 95th percentile.
func p95(lags []time.Duration) time.Duration {
	if len(lags) == 0 {
		return 0
	}
	s := slices.Clone(lags)
	slices.Sort(s)
	return s[(len(s)*95+99)/100-1]
}

func errorRate(r rule.Rule, system string, failed, total int) observation {
	var rate float64
	if total > 0 {
		rate = float64(failed) / float64(total)
	}
	o := observation{subject: system, holds: total >= r.MinAttempts && total > 0 && rate > r.Rate, details: map[string]any{
		"system": system, "rate": rate, "above": r.Rate, "failed": failed, "attempts": total,
		"window_seconds": r.Window.Seconds(), "min_attempts": r.MinAttempts,
	}}
	switch {
	case o.holds:
		o.summary = fmt.Sprintf("error rate of system %s is %s over the last %s: %s of %s attempts failed (above %s)",
			system, fmtPercent(rate), fmtDuration(r.Window), fmtInt(failed), fmtInt(total), fmtPercent(r.Rate))
	case total < r.MinAttempts || total == 0:
		o.unknown = true
		o.summary = fmt.Sprintf("%s against system %s in the last %s, too few to judge (min_attempts %s)",
			plural(total, "attempt"), system, fmtDuration(r.Window), fmtInt(r.MinAttempts))
	default:
		o.summary = fmt.Sprintf("error rate of system %s is %s over the last %s: %s of %s attempts failed (limit %s)",
			system, fmtPercent(rate), fmtDuration(r.Window), fmtInt(failed), fmtInt(total), fmtPercent(r.Rate))
	}
	return o
}

// risingBacklog compares the flow's depth now with its depth at the start
// of the window (the last sample at or before it). It holds when the queue
// grew by at least Growth and never fell more than 10% below its highest
// depth so far in between: a queue that drains now and then is working.
func risingBacklog(r rule.Rule, flow string, s []depthSample, now time.Time) observation {
	o := observation{subject: flow, details: map[string]any{"flow": flow, "min_growth": r.Growth, "over_seconds": r.Window.Seconds()}}
	base := -1
	for j, x := range s {
		if !x.at.After(now.Add(-r.Window)) {
			base = j
		}
	}
	if base < 0 {
		o.unknown = true
		o.summary = fmt.Sprintf("queue of flow %s has less than %s of history", flow, fmtDuration(r.Window))
		return o
	}
	from, to := s[base].depth, s[len(s)-1].depth
	peak, drained := from, false
	for _, x := range s[base+1:] {
		if float64(x.depth) < 0.9*float64(peak) {
			drained = true
		}
		peak = max(peak, x.depth)
	}
	o.holds = !drained && to-from >= r.Growth
	o.details["from"], o.details["to"], o.details["growth"] = from, to, to-from
	switch {
	case o.holds:
		o.summary = fmt.Sprintf("queue of flow %s grew from %s to %s (+%s) over the last %s without draining (min_growth %s)",
			flow, fmtInt(from), fmtInt(to), fmtInt(to-from), fmtDuration(r.Window), fmtInt(r.Growth))
	case drained:
		o.summary = fmt.Sprintf("queue of flow %s is draining: %s now, %s at most in the last %s", flow, fmtInt(to), fmtInt(peak), fmtDuration(r.Window))
	default:
		o.summary = fmt.Sprintf("queue of flow %s went from %s to %s over the last %s (min_growth %s)",
			flow, fmtInt(from), fmtInt(to), fmtDuration(r.Window), fmtInt(r.Growth))
	}
	return o
}

// silentSource measures silence from the source's last event, or from when
// alerting started if the store holds none.
func silentSource(r rule.Rule, last time.Time, ok bool, started, now time.Time) observation {
	since := started
	if ok {
		since = last
	}
	silent := now.Sub(since)
	o := observation{subject: r.Source, holds: silent >= r.Age, details: map[string]any{
		"source": r.Source, "silent_seconds": silent.Seconds(), "for_seconds": r.Age.Seconds(), "last_event_at": nil,
	}}
	if ok {
		o.details["last_event_at"] = last.UTC()
	}
	switch {
	case o.holds && ok:
		o.summary = fmt.Sprintf("no event from source %s for %s (last at %s; expected within %s)",
			r.Source, fmtDuration(silent), fmtTime(last), fmtDuration(r.Age))
	case o.holds:
		o.summary = fmt.Sprintf("no event from source %s since alerting started %s ago (none stored; expected within %s)",
			r.Source, fmtDuration(silent), fmtDuration(r.Age))
	case ok:
		o.summary = fmt.Sprintf("source %s received an event %s ago (at %s)", r.Source, fmtDuration(silent), fmtTime(last))
	default:
		o.summary = fmt.Sprintf("source %s has received no event yet", r.Source)
	}
	return o
}

// lagsSince returns each flow's lag samples taken at or after since.
func (m *Manager) lagsSince(since time.Time) map[string][]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]time.Duration{}
	for flow, s := range m.lags {
		for _, x := range s {
			if !x.at.Before(since) {
				out[flow] = append(out[flow], x.lag)
			}
		}
	}
	return out
}

// depthHistory copies rising_backlog's samples.
func (m *Manager) depthHistory() map[string][]depthSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]depthSample, len(m.depths))
	for flow, s := range m.depths {
		out[flow] = slices.Clone(s)
	}
	return out
}

// pollCursor measures how long a poll source's cursor has stood still,
// from its last move, or from when alerting started if it never moved.
func pollCursor(r rule.Rule, p store.PollState, started, now time.Time) observation {
	since, moved := started, !p.CursorMovedAt.IsZero()
	if moved {
		since = p.CursorMovedAt
	}
	still := now.Sub(since)
	o := observation{subject: r.Source, holds: still >= r.Age, details: map[string]any{
		"source": r.Source, "still_seconds": still.Seconds(), "for_seconds": r.Age.Seconds(),
		"cursor": p.Cursor, "last_error": p.LastError, "cursor_moved_at": nil,
	}}
	if moved {
		o.details["cursor_moved_at"] = p.CursorMovedAt.UTC()
	}
	switch {
	case o.holds && moved:
		o.summary = fmt.Sprintf("the cursor of poll source %s has not advanced for %s (still %q since %s; expected within %s)",
			r.Source, fmtDuration(still), p.Cursor, fmtTime(p.CursorMovedAt), fmtDuration(r.Age))
	case o.holds:
		o.summary = fmt.Sprintf("poll source %s has not stored a cursor since alerting started %s ago (expected within %s)",
			r.Source, fmtDuration(still), fmtDuration(r.Age))
	default:
		o.summary = fmt.Sprintf("the cursor of poll source %s advanced %s ago (now %q)", r.Source, fmtDuration(still), p.Cursor)
	}
	if o.holds && p.LastError != "" {
		o.summary += "; last error: " + p.LastError
	}
	return o
}

// pollFailing fires after r.Count failed runs in a row of a timed source.
func pollFailing(r rule.Rule, p store.PollState) observation {
	name := p.Source
	o := observation{subject: name, holds: p.Failures >= r.Count, details: map[string]any{
		"source": name, "failures": p.Failures, "threshold": r.Count, "last_error": p.LastError,
		"last_ok_at": nil,
	}}
	if !p.LastOKAt.IsZero() {
		o.details["last_ok_at"] = p.LastOKAt.UTC()
	}
	last := "never"
	if !p.LastOKAt.IsZero() {
		last = fmtTime(p.LastOKAt)
	}
	if o.holds {
		o.summary = fmt.Sprintf("timed source %s failed %d runs in a row (last success: %s): %s", name, p.Failures, last, p.LastError)
	} else {
		o.summary = fmt.Sprintf("timed source %s runs again (last success: %s)", name, last)
	}
	return o
}

// backstopFound fires while the last run of a backstop poll found more
// than r.Count records its webhook source never delivered.
func backstopFound(r rule.Rule, p store.PollState) observation {
	o := observation{subject: r.Source, holds: p.LastFound > r.Count, details: map[string]any{
		"source": r.Source, "found": p.LastFound, "above": r.Count,
	}}
	if o.holds {
		o.summary = fmt.Sprintf("backstop poll %s found %d records its webhooks never delivered in its last run (lost webhooks; the poll stored them)", r.Source, p.LastFound)
	} else {
		o.summary = fmt.Sprintf("backstop poll %s found no record the webhooks missed in its last run", r.Source)
	}
	return o
}
