package poll

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-dev/switchboard/internal/engine"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/metrics"
	"github.com/switchboard-dev/switchboard/internal/store"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Kinds of difference a reconciliation reports: the type of its events.
const (
	// MissingInMirror: a key the owner has and the mirror lacks.
	MissingInMirror = "missing_in_mirror"
	// MissingInOwner: a key the mirror has and the owner lacks.
	MissingInOwner = "missing_in_owner"
	// FieldMismatch: a key on both sides whose compared fields differ; one
	// per record, naming every differing field.
	FieldMismatch = "field_mismatch"
	// DuplicateKey: several records of one side share a key. They cannot
	// be paired, so the key is not compared further.
	DuplicateKey = "duplicate_key"
	// SummaryType is the type of the event that ends a run.
	SummaryType = "summary"
)

// DifferenceTypes are the kinds of difference, in report order.
var DifferenceTypes = []string{MissingInMirror, MissingInOwner, FieldMismatch, DuplicateKey}

// emitParallel bounds the difference events in flight to the engine's
// group committer at once.
const emitParallel = 32

// Difference is one difference between the owner and the mirror.
type Difference struct {
	Type string
	// Key is the match key.
	Key string
	// Owner and Mirror are the records with Key; nil on a side that lacks
	// it (and for a duplicate_key).
	Owner, Mirror any
	// Fields are the differing fields of a field_mismatch, sorted.
	Fields []string
	// OwnerValues and MirrorValues are the compared fields' values as jq
	// gave them: the differing fields of a field_mismatch, every field of
	// the side that has the record when it is missing on the other.
	OwnerValues, MirrorValues map[string]any
	// Side ("owner" or "mirror") and Records describe a duplicate_key.
	Side    string
	Records []any
}

// Report is what one reconciliation found.
type Report struct {
	Source string
	// Run names the run: its scheduled time, or "manual-TIME".
	Run                   string
	StartedAt, FinishedAt time.Time
	// OwnerCount and MirrorCount are the records listed on each side;
	// OwnerUnkeyed and MirrorUnkeyed those whose key was null or empty,
	// which are counted and not compared.
	OwnerCount, MirrorCount     int
	OwnerUnkeyed, MirrorUnkeyed int
	// Matched counts the keys found once on each side, which were compared
	// field by field (a field_mismatch is one of them).
	Matched int
	// Differences are sorted by key.
	Differences []Difference
	// Emitted counts the events this run stored (differences and summary);
	// Duplicates those an earlier run of the same tick had stored.
	Emitted, Duplicates int
}

// Count returns the number of differences of kind typ.
func (r *Report) Count(typ string) int {
	n := 0
	for _, d := range r.Differences {
		if d.Type == typ {
			n++
		}
	}
	return n
}

// ReconcileOptions change one reconciliation; the zero value is a manual
// run that emits its events.
type ReconcileOptions struct {
	// DryRun lists and compares, and emits nothing.
	DryRun bool
	// Run names the run in event keys and payloads: a run of the same name
	// emits nothing twice. Default "manual-" and the current time.
	Run string
}

// Reconcile lists src's owner and mirror to their ends, pairs their
// records by key, compares the fields and, unless o.DryRun, emits one
// event per difference and then a summary event. It fails, emitting
// nothing, when a side has more pages than its max_pages (the unread
// records would be reported missing) or, unless o.DryRun, when it finds
// more differences than max_differences. The report is returned with the
// error once both sides were compared (FinishedAt is set).
func (p *Poller) Reconcile(ctx context.Context, src *flow.Source, o ReconcileOptions) (Report, error) {
	rc := src.Reconcile
	if rc == nil {
		return Report{}, fmt.Errorf("source %s is not a reconcile source", src.Name)
	}
	rep := Report{Source: src.Name, StartedAt: p.cfg.NowFunc()}
	rep.Run = cmp.Or(o.Run, "manual-"+rep.StartedAt.UTC().Format(time.RFC3339Nano))
	owner, err := p.listAll(ctx, "owner", &rc.Owner.Listing)
	if err != nil {
		return rep, err
	}
	mirror, err := p.listAll(ctx, "mirror", &rc.Mirror.Listing)
	if err != nil {
		return rep, err
	}
	rep.OwnerCount, rep.MirrorCount = len(owner), len(mirror)
	if err := compare(ctx, rc, owner, mirror, &rep); err != nil {
		return rep, err
	}
	rep.FinishedAt = p.cfg.NowFunc()
	if o.DryRun {
		return rep, nil
	}
	for _, t := range DifferenceTypes {
		p.cfg.Metrics.ReconcileDifferences(src.Name, t, rep.Count(t))
	}
	if rc.MaxDifferences > 0 && len(rep.Differences) > rc.MaxDifferences {
		return rep, needsConfig(fmt.Errorf("%d differences, more than max_differences (%d): nothing emitted; check owner.key, mirror.key and items (a mistake there makes every record look missing), then raise max_differences",
			len(rep.Differences), rc.MaxDifferences))
	}
	return rep, p.emit(ctx, src, &rep)
}

// listAll reads every page of a listing. Stopping at max_pages would
// leave records unread that would then look missing, so it is an error.
func (p *Poller) listAll(ctx context.Context, side string, l *flow.Listing) ([]any, error) {
	req, err := firstRequest(ctx, l, nil)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", side, l.System, err)
	}
	var records []any
	var cur pageCursor
	for page := 1; ; page++ {
		resp, err := p.fetch(ctx, l, req)
		if err != nil {
			return nil, fmt.Errorf("%s (%s) page %d: %w", side, l.System, page, err)
		}
		pg, err := decodePage(ctx, l, resp)
		if err != nil {
			return nil, fmt.Errorf("%s (%s) page %d: %w", side, l.System, page, err)
		}
		records = append(records, pg.items...)
		next, ok, err := nextRequest(ctx, l, req, pg, &cur)
		if err != nil {
			return nil, fmt.Errorf("%s (%s) page %d: next page: %w", side, l.System, page, err)
		}
		if !ok {
			return records, nil
		}
		if page >= l.MaxPages {
			return nil, needsConfig(fmt.Errorf("%s (%s): more pages than max_pages (%d); a reconciliation must read every record, so nothing is reported: raise %s.max_pages",
				side, l.System, l.MaxPages, side))
		}
		req = next
	}
}

// byKey indexes one side's records by key.
func byKey(ctx context.Context, side string, key *transform.Expr, records []any) (map[string][]any, int, error) {
	out := make(map[string][]any, len(records))
	unkeyed := 0
	for i, rec := range records {
		v, err := key.Eval(ctx, rec)
		if err != nil {
			return nil, 0, fmt.Errorf("%s record %d: key: %w", side, i+1, err)
		}
		if s, ok := v.(string); v == nil || ok && strings.TrimSpace(s) == "" {
			unkeyed++
			continue
		}
		k, err := flow.KeyText(key, v)
		if err != nil {
			return nil, 0, fmt.Errorf("%s record %d: key: %w", side, i+1, err)
		}
		out[k] = append(out[k], rec)
	}
	if unkeyed > 0 && unkeyed == len(records) {
		// Most likely a key naming a field the records do not have: it
		// would pair nothing and report nothing.
		return nil, 0, fmt.Errorf("%s: none of the %d records has a key (%s is null or empty for each); check %s.key", side, len(records), key, side)
	}
	return out, unkeyed, nil
}

// compare pairs the records by key and fills rep's differences.
func compare(ctx context.Context, rc *flow.Reconcile, owner, mirror []any, rep *Report) error {
	ob, ou, err := byKey(ctx, "owner", rc.Owner.Key, owner)
	if err != nil {
		return err
	}
	mb, mu, err := byKey(ctx, "mirror", rc.Mirror.Key, mirror)
	if err != nil {
		return err
	}
	rep.OwnerUnkeyed, rep.MirrorUnkeyed = ou, mu
	keys := slices.Sorted(maps.Keys(ob))
	for k := range mb {
		if _, ok := ob[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	values := func(side string, rec any, f func(flow.Field) *transform.Expr, k string) (map[string]any, error) {
		out := make(map[string]any, len(rc.Fields))
		for _, fd := range rc.Fields {
			v, err := f(fd).Eval(ctx, rec)
			if err != nil {
				return nil, fmt.Errorf("%s record %q: field %s: %w", side, k, fd.Name, err)
			}
			out[fd.Name] = v
		}
		return out, nil
	}
	ownerExpr := func(f flow.Field) *transform.Expr { return f.Owner }
	mirrorExpr := func(f flow.Field) *transform.Expr { return f.Mirror }
	for _, k := range keys {
		ors, ms := ob[k], mb[k]
		if len(ors) > 1 {
			rep.Differences = append(rep.Differences, Difference{Type: DuplicateKey, Key: k, Side: "owner", Records: ors})
		}
		if len(ms) > 1 {
			rep.Differences = append(rep.Differences, Difference{Type: DuplicateKey, Key: k, Side: "mirror", Records: ms})
		}
		switch {
		case len(ors) > 1 || len(ms) > 1:
		case len(ms) == 0:
			vals, err := values("owner", ors[0], ownerExpr, k)
			if err != nil {
				return err
			}
			rep.Differences = append(rep.Differences, Difference{Type: MissingInMirror, Key: k, Owner: ors[0], OwnerValues: vals})
		case len(ors) == 0:
			vals, err := values("mirror", ms[0], mirrorExpr, k)
			if err != nil {
				return err
			}
			rep.Differences = append(rep.Differences, Difference{Type: MissingInOwner, Key: k, Mirror: ms[0], MirrorValues: vals})
		default:
			rep.Matched++
			ov, err := values("owner", ors[0], ownerExpr, k)
			if err != nil {
				return err
			}
			mv, err := values("mirror", ms[0], mirrorExpr, k)
			if err != nil {
				return err
			}
			d := Difference{Type: FieldMismatch, Key: k, Owner: ors[0], Mirror: ms[0], OwnerValues: map[string]any{}, MirrorValues: map[string]any{}}
			for _, fd := range rc.Fields {
				if !Same(ov[fd.Name], mv[fd.Name]) {
					d.Fields = append(d.Fields, fd.Name)
					d.OwnerValues[fd.Name], d.MirrorValues[fd.Name] = ov[fd.Name], mv[fd.Name]
				}
			}
			if len(d.Fields) > 0 {
				rep.Differences = append(rep.Differences, d)
			}
		}
	}
	return nil
}

// emit stores each difference as an event of src, then the summary. The
// summary goes last, so a flow on it finds every difference of its run
// stored. Each event is keyed by run, type and key: running the same tick
// again (after a failure, or on another node) stores nothing twice.
func (p *Poller) emit(ctx context.Context, src *flow.Source, rep *Report) error {
	var mu sync.Mutex
	accept := func(ctx context.Context, key string, v map[string]any) error {
		acc, err := p.accept(ctx, src.Name, key, v)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		// Counted as received events of the source, like webhooks and
		// polled records.
		if acc.Duplicate {
			rep.Duplicates++
			p.cfg.Metrics.EventReceived(src.Name, metrics.OutcomeDuplicate)
		} else {
			rep.Emitted++
			p.cfg.Metrics.EventReceived(src.Name, metrics.OutcomeAccepted)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(emitParallel)
	for _, d := range rep.Differences {
		key, v := differenceEvent(rep.Run, d)
		g.Go(func() error { return accept(gctx, key, v) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("emit differences: %w", err)
	}
	if err := accept(ctx, "reconcile:"+rep.Run+":"+SummaryType, summaryEvent(rep)); err != nil {
		return fmt.Errorf("emit summary: %w", err)
	}
	return nil
}

func (p *Poller) accept(ctx context.Context, source, key string, v map[string]any) (engine.Accepted, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return engine.Accepted{}, err
	}
	// The flows' conditions see the payload as a webhook's would be seen.
	value, err := transform.Decode(payload)
	if err != nil {
		return engine.Accepted{}, err
	}
	return p.cfg.Engine.Accept(ctx, engine.Event{Source: source, Key: flow.StorableKey(key), Payload: payload, Value: value})
}

// differenceEvent returns the idempotency key and payload of d's event.
func differenceEvent(run string, d Difference) (string, map[string]any) {
	v := map[string]any{"type": d.Type, "key": d.Key, "run": run}
	key := "reconcile:" + run + ":" + d.Type + ":"
	switch d.Type {
	case DuplicateKey:
		v["side"], v["records"] = d.Side, d.Records
		key += d.Side + ":"
	case MissingInMirror:
		v["owner"], v["mirror"], v["owner_values"] = d.Owner, nil, d.OwnerValues
	case MissingInOwner:
		v["owner"], v["mirror"], v["mirror_values"] = nil, d.Mirror, d.MirrorValues
	case FieldMismatch:
		v["owner"], v["mirror"] = d.Owner, d.Mirror
		v["fields"], v["owner_values"], v["mirror_values"] = d.Fields, d.OwnerValues, d.MirrorValues
	}
	return key + d.Key, v
}

func summaryEvent(rep *Report) map[string]any {
	v := map[string]any{
		"type":           SummaryType,
		"run":            rep.Run,
		"owner_count":    rep.OwnerCount,
		"mirror_count":   rep.MirrorCount,
		"owner_unkeyed":  rep.OwnerUnkeyed,
		"mirror_unkeyed": rep.MirrorUnkeyed,
		"matched":        rep.Matched,
		"started_at":     rep.StartedAt.UTC().Format(time.RFC3339Nano),
		"finished_at":    rep.FinishedAt.UTC().Format(time.RFC3339Nano),
	}
	for _, t := range DifferenceTypes {
		v[t] = rep.Count(t)
	}
	return v
}

// runReconcile runs a scheduled reconciliation, named by its scheduled
// time like a schedule's tick (see runName).
func (p *Poller) runReconcile(ctx context.Context, src *flow.Source, st store.PollState) error {
	run, err := p.runName(ctx, src, st)
	if err != nil {
		return err
	}
	rep, err := p.Reconcile(ctx, src, ReconcileOptions{Run: run})
	attrs := []any{"source", src.Name, "run", rep.Run, "owner_records", rep.OwnerCount, "mirror_records", rep.MirrorCount,
		"matched", rep.Matched, "differences", len(rep.Differences), "emitted", rep.Emitted, "duplicates", rep.Duplicates,
		"duration", p.cfg.NowFunc().Sub(rep.StartedAt).Round(time.Millisecond)}
	for _, t := range DifferenceTypes {
		attrs = append(attrs, t, rep.Count(t))
	}
	if err != nil {
		if !isPaused(err) { // step logs a skip
			p.cfg.Logger.Error("reconciliation failed", append(attrs, "error", err)...)
		}
		return err
	}
	p.cfg.Logger.Info("reconciliation finished", attrs...)
	return nil
}
