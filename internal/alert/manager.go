package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// Stats is what the evaluator reads from the store. store.Store satisfies
// it.
type Stats interface {
	QueueStats(ctx context.Context) ([]store.FlowStats, error)
	LastEventAt(ctx context.Context, source string) (time.Time, bool, error)
	AttemptStats(ctx context.Context, since time.Time) ([]store.AttemptCount, error)
	ListPollStates(ctx context.Context) ([]store.PollState, error)
}

// DeadLetter describes a run that was just dead-lettered (app adapts the
// executor's report to it).
type DeadLetter struct {
	RunID   string
	EventID string
	Source  string
	Flow    string
	// Step is the id of the step that failed.
	Step string
	// System is the system that step called ("" if none).
	System   string
	Attempts int
	// Error is the run's last error.
	Error string
}

// Config configures a Manager.
type Config struct {
	// Alerts are the compiled rules and targets (flow.Plan.Alerts). Nil
	// makes an inert Manager: nothing alerts and Run and Deliver only wait.
	Alerts *rule.Set
	// Stats is read by the evaluation. Required when Alerts has rules.
	Stats Stats
	// Logger receives failures and alert transitions. Defaults to discard.
	Logger *slog.Logger
	// NowFunc is the clock of the alert logic (pending, reminders,
	// windows). Defaults to time.Now. Retry waits use real timers.
	NowFunc func() time.Time
	// Client sends the notifications of slack and webhook targets.
	// Defaults to a client with a 10s timeout that does not follow
	// redirects. Email targets dial their SMTP server, with a 10s timeout
	// per network operation.
	Client *http.Client
	// QueueSize bounds each target's queue of unsent notifications.
	// Defaults to 256.
	QueueSize int
	// RetryBase is the wait before the first retry of a failed send; it
	// doubles per try. Defaults to 1s.
	RetryBase time.Duration
	// RetryCap bounds each wait between tries. Defaults to 1m.
	RetryCap time.Duration
	// MaxTries is how many times one notification is tried, the first
	// included. Defaults to 6.
	MaxTries int
}

// Defaults of Config.
const (
	DefaultQueueSize = 256
	DefaultRetryBase = time.Second
	DefaultRetryCap  = time.Minute
	DefaultMaxTries  = 6
	// maxLagSamples bounds the lag samples kept per flow.
	maxLagSamples = 10000
)

// withDefaults returns a copy of c with zero fields defaulted.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	if c.Client == nil {
		c.Client = &http.Client{
			// Its own connection pool: http.DefaultTransport's is shared,
			// and anyone's CloseIdleConnections on it (httptest.Server.Close
			// does that) can break a send in flight, which is then retried
			// and arrives twice.
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			Timeout:   10 * time.Second,
			// A redirect is a misconfigured target; following it would
			// send the alert, and maybe a header, somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.QueueSize = cmp.Or(c.QueueSize, DefaultQueueSize)
	c.RetryBase = cmp.Or(c.RetryBase, DefaultRetryBase)
	c.RetryCap = cmp.Or(c.RetryCap, DefaultRetryCap)
	c.MaxTries = cmp.Or(c.MaxTries, DefaultMaxTries)
	return c
}

// Manager evaluates alert rules and sends their notifications. Create it
// with New; run Deliver on every node and Run on one. Its methods are safe
// for concurrent use.
type Manager struct {
	cfg     Config
	set     rule.Set
	log     *slog.Logger
	senders []*sender
	// started is when the Manager was created: silent_source measures
	// silence from it when a source never received an event.
	started time.Time
	// maxLagWindow is the longest lag_p95 window (0 without lag rules).
	maxLagWindow time.Duration
	dropped      atomic.Int64

	mu sync.Mutex // guards the fields below
	// alerts are the pending and firing alerts.
	alerts map[key]*active
	// deadSeq counts RunDead calls, so an evaluation whose QueueStats was
	// read before a dead run never resolves the alert that run fired.
	deadSeq uint64
	// depths are rising_backlog's queue samples, by flow.
	depths map[string][]depthSample
	// lags are ObserveLag's samples, by flow.
	lags map[string][]lagSample
}

// key identifies an alert: a rule (by index, since two rules may share a
// kind) and a subject.
type key struct {
	rule    int
	subject string
}

// active is a pending or firing alert.
type active struct {
	pending bool
	// since is when the condition was first seen holding.
	since time.Time
	// sent is when FIRING or the last reminder was sent.
	sent time.Time
	// Dead-letter alerts: the latest dead run, how many died since the
	// last notification, and the deadSeq of the latest.
	dead    DeadLetter
	newDead int
	seq     uint64
}

type depthSample struct {
	at    time.Time
	depth int
}

type lagSample struct {
	at  time.Time
	lag time.Duration
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		started: cfg.NowFunc(),
		alerts:  map[key]*active{},
		depths:  map[string][]depthSample{},
		lags:    map[string][]lagSample{},
	}
	if cfg.Alerts == nil {
		return m, nil
	}
	m.set = *cfg.Alerts
	m.set.EvaluateEvery = cmp.Or(m.set.EvaluateEvery, rule.DefaultEvaluateEvery)
	m.set.RemindEvery = cmp.Or(m.set.RemindEvery, rule.DefaultRemindEvery)
	if len(m.set.Rules) > 0 && cfg.Stats == nil {
		return nil, errors.New("alert: Config.Stats is required when there are rules")
	}
	for i, t := range m.set.Targets {
		s := &sender{target: t, index: i, queue: make(chan notification, cfg.QueueSize)}
		if t.Kind == rule.Email {
			if t.Email == nil {
				return nil, fmt.Errorf("alert: notify[%d]: an email target needs Target.Email", i)
			}
			ml, err := newMailer(t.Email)
			if err != nil {
				return nil, fmt.Errorf("alert: notify[%d] email: %w", i, err)
			}
			s.mail = ml
		}
		m.senders = append(m.senders, s)
	}
	// flow.Compile fills these in; a hand-built Set may leave them zero.
	m.set.Rules = slices.Clone(m.set.Rules)
	for i := range m.set.Rules {
		r := &m.set.Rules[i]
		if r.Kind == rule.LagP95 || r.Kind == rule.ErrorRate {
			r.Window = cmp.Or(r.Window, rule.DefaultWindow)
		}
		if r.Kind == rule.ErrorRate {
			r.MinAttempts = cmp.Or(r.MinAttempts, rule.DefaultMinAttempts)
		}
		if r.Kind == rule.LagP95 {
			m.maxLagWindow = max(m.maxLagWindow, r.Window)
		}
	}
	return m, nil
}

// Run evaluates the threshold rules now and every evaluate_every until ctx
// ends; it always returns nil. Run it on one node (the app's leader lease):
// each evaluator announces the alerts it sees. When Run returns it forgets
// its threshold alerts, so a node that leads again starts afresh.
func (m *Manager) Run(ctx context.Context) error {
	if !m.hasThresholdRules() {
		<-ctx.Done()
		return nil
	}
	defer m.forgetThresholdAlerts()
	tick := time.NewTicker(m.set.EvaluateEvery)
	defer tick.Stop()
	for {
		if err := m.Evaluate(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("evaluate alerts", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Deliver sends queued notifications and, every evaluate_every, brings
// this node's dead-letter alerts up to date (reminders, RESOLVED), until
// ctx ends; it always returns nil. Run it on every node. Notifications
// still queued, or waiting to be retried, when ctx ends get flushWait more
// to go out; those left are logged.
func (m *Manager) Deliver(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range m.senders {
		wg.Go(func() { m.sendLoop(ctx, s) })
	}
	if m.hasDeadRules() {
		wg.Go(func() {
			tick := time.NewTicker(m.set.EvaluateEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := m.updateDead(ctx, nil); err != nil && ctx.Err() == nil {
					m.log.Error("check dead-letter alerts", "error", err)
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Dropped returns how many notifications were dropped because a target's
// queue was full.
func (m *Manager) Dropped() int64 { return m.dropped.Load() }

// RunDead records a dead-lettered run and, if it is the first dead run of
// its flow since the flow's alert last resolved, queues the notification.
// It never blocks: call it from the executor the moment a run dies.
func (m *Manager) RunDead(_ context.Context, d DeadLetter) {
	now := m.cfg.NowFunc()
	var out []notification
	m.mu.Lock()
	m.deadSeq++
	for i, r := range m.set.Rules {
		if r.Kind != rule.DeadLetter || r.Flow != "" && r.Flow != d.Flow {
			continue
		}
		k := key{i, d.Flow}
		if a := m.alerts[k]; a != nil {
			a.dead, a.seq = d, m.deadSeq
			a.newDead++
			continue
		}
		m.alerts[k] = &active{since: now, sent: now, dead: d, seq: m.deadSeq}
		out = append(out, m.deadFiring(r, d, now))
	}
	// Queued under mu (enqueue never blocks): a concurrent updateDead may
	// resolve this alert the moment mu is released, and its RESOLVED must
	// not overtake this FIRING in a target's queue.
	for _, n := range out {
		m.enqueue(n)
	}
	m.mu.Unlock()
}

// SystemPaused tells every target at once that a system refused our
// credentials (401/403) and its runs wait. No rule is needed: a paused
// system stops every flow that calls it. The store makes sure one node
// calls it per pause. It never blocks.
func (m *Manager) SystemPaused(system, reason string) {
	if len(m.senders) == 0 {
		return
	}
	now := m.cfg.NowFunc()
	m.enqueue(notification{
		state: firing, rule: SystemPausedRule, subject: system, startedAt: now, at: now, link: m.link(""),
		summary: fmt.Sprintf("system %s is paused: %s. Its runs wait (none fail) until a probe succeeds or `switchboard systems resume %s`", system, reason, system),
		details: map[string]any{"system": system, "reason": reason},
	})
}

// SystemResumed sends the RESOLVED of SystemPaused.
func (m *Manager) SystemResumed(system string) {
	if len(m.senders) == 0 {
		return
	}
	now := m.cfg.NowFunc()
	m.enqueue(notification{
		state: resolved, rule: SystemPausedRule, subject: system, startedAt: now, at: now, link: m.link(""),
		summary: fmt.Sprintf("system %s is resumed: a request succeeded; its waiting runs go", system),
		details: map[string]any{"system": system},
	})
}

// SystemPausedRule names the built-in alert of a paused system.
const SystemPausedRule rule.Kind = "system_paused"

// ObserveLag records the time from receipt to end of a run of flow that
// finished on this node, for lag_p95. Only the evaluating node's samples
// count, so with several nodes lag_p95 sees a share of the runs.
func (m *Manager) ObserveLag(flow string, d time.Duration) {
	if m.maxLagWindow == 0 {
		return
	}
	now := m.cfg.NowFunc()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := append(m.lags[flow], lagSample{at: now, lag: d})
	cut := 0
	for cut < len(s) && (now.Sub(s[cut].at) > m.maxLagWindow || len(s)-cut > maxLagSamples) {
		cut++
	}
	m.lags[flow] = s[cut:]
}

// Evaluate evaluates every rule once at NowFunc's time and queues the
// notifications due: FIRING, reminders and RESOLVED. Run calls it every
// evaluate_every; tests call it to step time. A failed statistics query
// leaves the alerts of the rules that need it unchanged, and is returned.
func (m *Manager) Evaluate(ctx context.Context) error {
	if len(m.set.Rules) == 0 {
		return nil
	}
	now := m.cfg.NowFunc()
	m.mu.Lock()
	seq := m.deadSeq
	m.mu.Unlock()
	in := &inputs{m: m, now: now}
	var errs []error
	var out []notification
	queues, qerr := m.cfg.Stats.QueueStats(ctx)
	if qerr != nil {
		errs = append(errs, qerr)
		in.queueErr = errSkipped
	} else {
		in.queues = queues
		m.sampleDepths(now, queues)
	}
	for i, r := range m.set.Rules {
		if r.Kind == rule.DeadLetter {
			continue
		}
		obs, err := in.observe(ctx, i, r)
		if err != nil {
			if !errors.Is(err, errSkipped) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, m.reconcile(i, r, obs, now)...)
	}
	for _, n := range out {
		m.enqueue(n)
	}
	if qerr == nil {
		errs = append(errs, m.updateDead(ctx, &deadInput{queues: queues, seq: seq, now: now}))
	}
	return errors.Join(errs...)
}

// observation is a rule's verdict on one subject.
type observation struct {
	subject string
	holds   bool
	// unknown means too little data to judge: the alert keeps its state
	// (a firing alert is reminded of, never resolved, for want of data).
	unknown bool
	// summary says what is wrong (holds) or how things stand now.
	summary string
	details map[string]any
}

// reconcile advances the alerts of rule i through their life cycle.
func (m *Manager) reconcile(i int, r rule.Rule, obs []observation, now time.Time) []notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []notification
	for _, o := range obs {
		k := key{i, o.subject}
		a := m.alerts[k]
		switch {
		case a == nil && (!o.holds || o.unknown):
		case o.unknown && a.pending:
		case o.unknown:
			if now.Sub(a.sent) >= m.set.RemindEvery {
				a.sent = now
				out = append(out, m.notify(reminder, r, o, a, now))
			}
		case a == nil:
			a = &active{since: now, pending: r.Kind == rule.QueueDepth && r.For > 0}
			m.alerts[k] = a
			if !a.pending {
				a.sent = now
				out = append(out, m.notify(firing, r, o, a, now))
			}
		case !o.holds:
			delete(m.alerts, k)
			if !a.pending {
				out = append(out, m.notify(resolved, r, o, a, now))
			}
		case a.pending:
			if now.Sub(a.since) >= r.For {
				a.pending, a.sent = false, now
				out = append(out, m.notify(firing, r, o, a, now))
			}
		case now.Sub(a.sent) >= m.set.RemindEvery:
			a.sent = now
			out = append(out, m.notify(reminder, r, o, a, now))
		}
	}
	return out
}

// activeSubjects returns the subjects of rule i's alerts, sorted. The
// caller must not hold mu.
func (m *Manager) activeSubjects(i int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.alerts {
		if k.rule == i {
			out = append(out, k.subject)
		}
	}
	slices.Sort(out)
	return out
}

func (m *Manager) hasThresholdRules() bool {
	return slices.ContainsFunc(m.set.Rules, func(r rule.Rule) bool { return r.Kind != rule.DeadLetter })
}

func (m *Manager) hasDeadRules() bool {
	return slices.ContainsFunc(m.set.Rules, func(r rule.Rule) bool { return r.Kind == rule.DeadLetter })
}

// forgetThresholdAlerts drops the state only the evaluator keeps.
func (m *Manager) forgetThresholdAlerts() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.alerts {
		if m.set.Rules[k.rule].Kind != rule.DeadLetter {
			delete(m.alerts, k)
		}
	}
	clear(m.depths)
}

// sampleDepths records each flow's queue depth for rising_backlog and
// drops samples too old for any rule.
func (m *Manager) sampleDepths(now time.Time, queues []store.FlowStats) {
	var keep time.Duration
	for _, r := range m.set.Rules {
		if r.Kind == rule.RisingBacklog {
			keep = max(keep, r.Window+2*m.set.EvaluateEvery)
		}
	}
	if keep == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, q := range queues {
		m.depths[q.Flow] = append(m.depths[q.Flow], depthSample{now, q.Waiting})
		seen[q.Flow] = true
	}
	for flow, s := range m.depths {
		if !seen[flow] {
			// QueueStats leaves out flows with nothing queued.
			s = append(s, depthSample{now, 0})
		}
		cut := 0
		for cut < len(s)-1 && now.Sub(s[cut+1].at) >= keep {
			cut++
		}
		m.depths[flow] = s[cut:]
	}
}
