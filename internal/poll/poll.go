// Package poll runs timed sources: polls, which page through a system's API
// from a stored cursor and turn each new or changed record into an event,
// reconciliations, which compare an entity's records in its owner and a
// mirror and emit one event per difference, and schedules, which emit a
// timer event on each tick. Each source runs on
// one node at a time (a lease in the store); its cursor and next run time
// live in the store, so after a restart, or on another node, the next run
// continues where the last one stopped.
package poll

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
)

// Store is what the poller needs of the store.
type Store interface {
	InitPollState(ctx context.Context, source string, next time.Time) error
	GetPollState(ctx context.Context, source string) (store.PollState, bool, error)
	CommitPollPage(ctx context.Context, p store.PollPage) ([]store.PollResult, error)
	FinishPoll(ctx context.Context, p store.PollRun) error
	SeenVersions(ctx context.Context, source string, ids []string) (map[string]string, error)
	AcquireLease(ctx context.Context, p store.LeaseParams) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Engine is what the poller needs of the engine: polled records are built
// into events (with their runs) like webhooks, but committed page by page
// with the cursor; timer events go through the group committer.
type Engine interface {
	Build(ctx context.Context, ev engine.Event) (engine.Built, error)
	Stored(ctx context.Context, built []engine.Built)
	Accept(ctx context.Context, ev engine.Event) (engine.Accepted, error)
}

// Config configures a Poller.
type Config struct {
	Plan   *flow.Plan
	Store  Store
	Engine Engine
	// Gates are the systems' limits, shared with the executor. Optional.
	Gates   map[string]*limit.Gate
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	NowFunc func() time.Time
	// Node names this process in the sources' leases.
	Node string
	// Lease is how long a source's lease lasts unless renewed. Default 30s.
	Lease time.Duration
	// Recheck bounds how long an idle node waits before reading a source's
	// state again (another node may have changed it). Default 15s.
	Recheck time.Duration
	// RetryBase is the first wait before a failed page is asked again.
	// Default 1s.
	RetryBase time.Duration
	// ResumedFunc is called when a page read's success lifted a system's
	// credential pause on this node's gate (the read was its probe), to
	// lift it on every node as a step's success does: app wires the
	// executor's LiftPause (pausing and resuming systems is the
	// executor's, which records them in the store). Optional: the command
	// line's backfill and reconcile leave it unset, since they stop at a
	// pause (StopFunc) rather than probe it.
	ResumedFunc func(ctx context.Context, system string)
	// StopFunc, when set, is called before each page read with the read's
	// system; an error it returns ends the run at once. The command line's
	// backfill and reconcile stop so when a system they call is paused in
	// the store, rather than wait for the pause's probe (a scheduled run
	// waits up to maxWait for it, then fails and the next run continues;
	// at an operator's pause it is skipped)
	// or be that probe: they say so and can be run again, while a pause
	// can last hours. They ask the store's pauses, not the gate, whose
	// credential pause a page read in flight lifts when it succeeds (see
	// limit.Gate.Acquire).
	StopFunc func(system string) error
}

// Limits of one poll run.
const (
	// pageAttempts is how often one page is asked before the run fails.
	pageAttempts = 4
	// maxWait is the longest a run waits in place (a Retry-After, a rate
	// limit); a longer one ends the run, and the next one continues.
	maxWait = 2 * time.Minute
	// retryCap bounds the wait before a failed run is tried again.
	retryCap = 10 * time.Minute
)

// Poller runs timed sources. Create with New.
type Poller struct{ cfg Config }

// New returns a Poller.
func New(cfg Config) *Poller {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	cfg.Lease = cmp.Or(cfg.Lease, 30*time.Second)
	cfg.Recheck = cmp.Or(cfg.Recheck, 15*time.Second)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, time.Second)
	return &Poller{cfg: cfg}
}

// Stats describe one poll run.
type Stats struct {
	Pages     int
	Records   int
	Emitted   int
	Unchanged int
	Known     int
	// Cursor is the cursor after the run ("" if the source keeps none).
	Cursor string
	// More reports that the run stopped at its page limit with pages left.
	More bool
}

// Options change one poll run; the zero value is a scheduled run.
type Options struct {
	// StateKey stores the cursor under another name (a backfill keeps its
	// own cursor; the seen versions stay the source's). Default: the
	// source's name.
	StateKey string
	// Cursor, when set, replaces the stored cursor for this run.
	Cursor *string
	// MaxPages overrides the source's page limit; negative means none.
	MaxPages int
	// Progress, when set, is called after each committed page.
	Progress func(Stats)
}

// Poll runs one poll of src: it reads pages from the stored cursor (or
// from o.Cursor, the configured start, or now) and commits each page's new
// records with the cursor they advance to, in one transaction per page. An
// error on a page leaves the cursor after the last committed one.
func (p *Poller) Poll(ctx context.Context, src *flow.Source, o Options) (Stats, error) {
	pl := src.Poll
	if pl == nil {
		return Stats{}, fmt.Errorf("source %s is not a poll source", src.Name)
	}
	key := cmp.Or(o.StateKey, src.Name)
	target := cmp.Or(pl.Target, src.Name)
	r := &pollRun{p: p, src: src, pl: pl, key: key, target: target}
	if err := r.startCursor(ctx, o.Cursor); err != nil {
		return Stats{}, err
	}
	r.stats.Cursor = r.cursorText
	maxPages := pl.MaxPages
	if o.MaxPages != 0 {
		maxPages = o.MaxPages
	}
	req, err := firstRequest(ctx, &pl.Listing, r.cursor)
	if err != nil {
		return r.stats, err
	}
	var cur pageCursor
	// Records that share one cursor value (a bulk update in one second)
	// are read by position from it, page after page. A record among them
	// changed meanwhile moves to the end of the listing, and what followed
	// it moves up a place: the next page starts one record later, and the
	// one skipped would be lost once the cursor moves past the value. So
	// the run leaving such a stretch (within: the value it is reading by
	// position) keeps the cursor at the value and reads the stretch once
	// more from its start (the seen versions skip what was read); the
	// second time it moves on. The second reading must fit in the pages
	// left (stretchFrom: where reading by position began); one that would
	// not is skipped, as the last page's is, or every run would stop on
	// the page limit inside it.
	var within string
	stretchFrom := 0
	verified := map[string]bool{}
	for page := 1; ; page++ {
		resp, err := p.fetch(ctx, &pl.Listing, req)
		if err != nil {
			return r.stats, fmt.Errorf("page %d: %w", page, err)
		}
		pg, err := decodePage(ctx, &pl.Listing, resp)
		if err != nil {
			return r.stats, fmt.Errorf("page %d: %w", page, err)
		}
		before := r.stats.Cursor
		// The pages to read the stretch again and leave it, from the next.
		fits := maxPages <= 0 || page+(page-stretchFrom+1) < maxPages
		hold := ""
		if within != "" && within == before && !verified[within] && fits {
			hold = within
		}
		own, err := r.commit(ctx, pg, hold)
		if err != nil {
			return r.stats, fmt.Errorf("page %d: %w", page, err)
		}
		if o.Progress != nil {
			o.Progress(r.stats)
		}
		next, ok, err := nextRequest(ctx, &pl.Listing, req, pg, &cur)
		if err != nil {
			return r.stats, fmt.Errorf("page %d: next page: %w", page, err)
		}
		leaving := hold != "" && own != "" && own != hold
		if !ok && !leaving {
			return r.stats, nil
		}
		if maxPages > 0 && page >= maxPages {
			return r.stats, r.pageLimit(maxPages)
		}
		if leaving {
			verified[hold] = true
			if next, err = firstRequest(ctx, &pl.Listing, hold); err != nil {
				return r.stats, err
			}
			cur, within, req = pageCursor{}, "", next
			continue
		}
		if restartsFromCursor(pl) && r.stats.Cursor == before {
			if within != before {
				stretchFrom = page
			}
			within = before // the next page is asked by position from this value
		} else {
			within = ""
		}
		if restartsFromCursor(pl) && r.stats.Cursor != before {
			// Positions shift when a record changes during the run (it
			// moves to the end, and what followed it moves up a place):
			// the next page is asked afresh from the cursor just stored,
			// which the inclusive cursor and the seen versions make safe.
			if next, err = firstRequest(ctx, &pl.Listing, r.stats.Cursor); err != nil {
				return r.stats, err
			}
			cur = pageCursor{}
		}
		req = next
	}
}

// restartsFromCursor reports whether, under a cursor, each page after the
// cursor moved is asked afresh from the new cursor. Page numbers and
// offsets are positions, and so are many opaque tokens and Link URLs (an
// offset in disguise); only has_more paging continues from a record (the
// last id), which a change elsewhere cannot shift.
func restartsFromCursor(pl *flow.Poll) bool {
	return pl.Cursor != nil && pl.Paginate.Style != flow.PageHasMore
}

// pageLimit ends a run that stopped at its page limit with pages left.
// The next run continues from the cursor, unless there is none or it did
// not move: then the next run would read the same pages again, forever,
// and never see the rest. That is an error, not a silent truncation.
func (r *pollRun) pageLimit(maxPages int) error {
	switch {
	case r.pl.Cursor == nil:
		return needsConfig(fmt.Errorf("the listing has more than max_pages (%d) pages and the source keeps no cursor, so the rest is never read; raise max_pages", maxPages))
	case r.stats.Cursor == r.cursorText:
		return needsConfig(fmt.Errorf("%d pages of records share the cursor %q, so the next run would read the same pages; raise max_pages", maxPages, r.cursorText))
	}
	r.stats.More = true
	return nil
}

// pollRun is the state of one Poll call.
type pollRun struct {
	p           *Poller
	src         *flow.Source
	pl          *flow.Poll
	key, target string
	// cursor is $cursor: the run's starting cursor as text, or nil.
	cursor     any
	cursorText string
	stats      Stats
}

// startCursor picks the run's cursor. On the very first run the start
// cursor is stored before anything is read, so a first run that finds
// nothing does not make the next one start from a later "now".
func (r *pollRun) startCursor(ctx context.Context, override *string) error {
	if override != nil {
		r.cursor, r.cursorText = *override, *override
		return nil
	}
	st, ok, err := r.p.cfg.Store.GetPollState(ctx, r.key)
	if err != nil {
		return err
	}
	if ok && st.HasCursor {
		r.cursor, r.cursorText = st.Cursor, st.Cursor
		return nil
	}
	if r.pl.Cursor == nil {
		return nil // no cursor: every run lists everything
	}
	now := r.p.cfg.NowFunc()
	start := cmp.Or(r.pl.Start, now.UTC().Format(time.RFC3339))
	if _, err := r.p.cfg.Store.CommitPollPage(ctx, store.PollPage{Source: r.key, Now: now, Cursor: start, SetCursor: true}); err != nil {
		return err
	}
	r.cursor, r.cursorText = start, start
	return nil
}

// commit turns a page's items into records and commits them with the
// cursor of the page's last item.
//
// The cursor stored is the page's last record's, or hold when set (the run
// keeps the cursor at a value it must read again); commit returns the
// page's own ("" without a cursor or records).
func (r *pollRun) commit(ctx context.Context, pg *page, hold string) (string, error) {
	// Identify every record first, and drop the versions seen before
	// without building their events: a source that lists everything each
	// run does no more than this read for what did not change. The commit
	// checks again, in its transaction.
	ids := make([]identity, len(pg.items))
	keys := make([]string, len(pg.items))
	for i, item := range pg.items {
		id, err := r.identify(ctx, item)
		if err != nil {
			return "", fmt.Errorf("record %d: %w", i+1, err)
		}
		ids[i], keys[i] = id, id.id
	}
	seen, err := r.p.cfg.Store.SeenVersions(ctx, r.src.Name, keys)
	if err != nil {
		return "", err
	}
	records := make([]store.PollRecord, 0, len(pg.items))
	built := make([]engine.Built, 0, len(pg.items))
	unchanged := 0
	for i, item := range pg.items {
		if v, ok := seen[ids[i].id]; ok && v == ids[i].version {
			unchanged++
			continue
		}
		rec, b, err := r.record(ctx, item, ids[i])
		if err != nil {
			return "", fmt.Errorf("record %d: %w", i+1, err)
		}
		records = append(records, rec)
		built = append(built, b)
	}
	pp := store.PollPage{Source: r.key, SeenAs: r.src.Name, Now: r.p.cfg.NowFunc(), Records: records}
	var own string
	if r.pl.Cursor != nil && len(pg.items) > 0 {
		v, err := r.pl.Cursor.Eval(ctx, pg.items[len(pg.items)-1], pg.body)
		if err != nil {
			return "", fmt.Errorf("cursor: %w", err)
		}
		if own, err = flow.KeyText(r.pl.Cursor, v); err != nil {
			return "", fmt.Errorf("cursor: %w", err)
		}
		pp.Cursor, pp.SetCursor = cmp.Or(hold, own), true
	}
	res, err := r.p.cfg.Store.CommitPollPage(ctx, pp)
	if err != nil {
		return "", err
	}
	// One pass: the page's counts, and polled records counted as received
	// events of the source that stores them, like webhooks (new ones
	// accepted or echo, already stored duplicate).
	m := r.p.cfg.Metrics
	var emitted []engine.Built
	known := 0
	for i, x := range res {
		switch x.Outcome {
		case store.PollEmitted:
			emitted = append(emitted, built[i])
			outcome := metrics.OutcomeAccepted
			if built[i].Event.Lineage.Outcome == store.EventEcho {
				outcome = metrics.OutcomeEcho
			}
			m.EventReceived(r.target, outcome)
		case store.PollUnchanged:
			unchanged++
		case store.PollKnown:
			known++
			m.EventReceived(r.target, metrics.OutcomeDuplicate)
		}
	}
	r.p.cfg.Engine.Stored(ctx, emitted)
	r.stats.Emitted += len(emitted)
	r.stats.Unchanged += unchanged
	r.stats.Known += known
	m.PollRecords(r.src.Name, metrics.PollEmitted, len(emitted))
	m.PollRecords(r.src.Name, metrics.PollUnchanged, unchanged)
	m.PollRecords(r.src.Name, metrics.PollKnown, known)
	if r.pl.Backstop() && len(emitted) > 0 {
		m.BackstopFound(r.target, len(emitted))
		r.p.cfg.Logger.Warn("backstop poll found records the webhook source had not delivered",
			"source", r.src.Name, "webhook_source", r.target, "records", len(emitted))
	}
	if pp.SetCursor {
		r.stats.Cursor = pp.Cursor
		if pp.Cursor != r.cursorText {
			m.CursorMoved(r.key, pp.Now)
		}
	}
	r.stats.Pages++
	r.stats.Records += len(pg.items)
	return own, nil
}

// identity is a polled record's id (as stored, and as given for its event
// key, which must match its webhooks' keys) and version.
type identity struct{ id, raw, version string }

// identify evaluates a polled item's id and version. The id is stored as
// StorableKey makes it, so the seen versions are read with the same text.
func (r *pollRun) identify(ctx context.Context, item any) (identity, error) {
	v, err := r.pl.ID.Eval(ctx, item)
	if err != nil {
		return identity{}, err
	}
	id, err := flow.KeyText(r.pl.ID, v)
	if err != nil {
		return identity{}, err
	}
	version, err := flow.RecordVersion(ctx, r.pl.Version, item)
	if err != nil {
		return identity{}, err
	}
	return identity{id: flow.StorableKey(id), raw: id, version: version}, nil
}

// record builds one polled item's record: the event it becomes, keyed
// id@version like the webhooks of a backed-up source.
func (r *pollRun) record(ctx context.Context, item any, id identity) (store.PollRecord, engine.Built, error) {
	payload, err := json.Marshal(item)
	if err != nil {
		return store.PollRecord{}, engine.Built{}, err
	}
	// Built like a webhook's event: echoes of our own writes and
	// conflicts are recognised the same way.
	b, err := r.p.cfg.Engine.Build(ctx, engine.Event{Source: r.target, Key: flow.RecordKey(id.raw, id.version), Payload: payload, Value: item})
	if err != nil {
		return store.PollRecord{}, b, err
	}
	return store.PollRecord{RecordID: id.id, Version: id.version, Event: b.Event}, b, nil
}

// Tick emits one timer event of a schedule source, keyed by its scheduled
// time, so a tick is emitted once whatever node or restart fires it.
func (p *Poller) Tick(ctx context.Context, src *flow.Source, scheduled time.Time) (engine.Accepted, error) {
	now := p.cfg.NowFunc()
	v := map[string]any{
		"source":       src.Name,
		"scheduled_at": scheduled.UTC().Format(time.RFC3339Nano),
		"fired_at":     now.UTC().Format(time.RFC3339Nano),
	}
	return p.accept(ctx, src.Name, "tick:"+scheduled.UTC().Format(time.RFC3339Nano), v)
}

// errWaitTooLong ends a run that would have to wait longer than maxWait.
var errWaitTooLong = errors.New("wait too long")

// pausedError ends a run that meets a system an operator paused: nothing
// calls it until it is resumed. A scheduled run so ended is skipped, not
// failed: the operator chose the pause, and counting it as a failure
// would raise poll_failing for it.
type pausedError struct{ system string }

func (e *pausedError) Error() string {
	return fmt.Sprintf("system %s is paused by an operator; `switchboard systems resume %s`", e.system, e.system)
}

// configError is a failure only a config change can fix (a page limit too
// small, too many differences): the source is not retried before its next
// scheduled run, since each retry would read the system again for nothing.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// needsConfig marks err as a configError.
func needsConfig(err error) error { return configError{err} }

// isPaused reports whether err is a *pausedError.
func isPaused(err error) bool {
	_, ok := errors.AsType[*pausedError](err)
	return ok
}
