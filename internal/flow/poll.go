package flow

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// Defaults of timed sources.
const (
	// DefaultMaxPages bounds the pages one poll run reads.
	DefaultMaxPages = 100
	// MinEvery is the shortest interval a timed source may run at.
	MinEvery = time.Second
)

// Schedule says when a timed source runs next.
type Schedule interface {
	// Next returns the first run time strictly after t.
	Next(t time.Time) time.Time
	// String describes the schedule for people ("every 5m0s").
	String() string
}

type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }
func (e every) String() string             { return "every " + time.Duration(e).String() }

type cronSchedule struct {
	s cron.Schedule
	// spec is s as fields, for the daylight-saving rules (nil for @every).
	spec *cron.SpecSchedule
	desc string
}

// cronStar marks a cron field written as "*" (robfig/cron's flag bit).
const cronStar = 1 << 63

// Next is cron's next time, with the rules people expect when clocks
// change, for schedules at fixed hours ("0 2 * * *"; a schedule with "*"
// for the hour is left alone: each of its times exists once): a time that
// does not exist because clocks sprang forward (02:30 on the night they
// jump from 02:00 to 03:00) runs when the gap ends, instead of being
// skipped until the next day; a time that exists twice because clocks fell
// back (01:30 on the night they return from 02:00 to 01:00) runs the first
// time only, instead of twice.
func (c cronSchedule) Next(t time.Time) time.Time {
	n := c.s.Next(t)
	if c.spec == nil || c.spec.Hour&cronStar != 0 || n.IsZero() {
		return n
	}
	if end, ok := c.gapBefore(t, n); ok {
		return end
	}
	for i := 0; i < 24*60 && c.repeated(n); i++ { // bounded: a repeated hour has at most 60 matching minutes
		n = c.s.Next(n)
	}
	return n
}

func (c cronSchedule) String() string { return c.desc }

// gapBefore returns the end of the first gap between t and n (clocks
// springing forward) in which a wall time of the schedule falls.
func (c cronSchedule) gapBefore(t, n time.Time) (time.Time, bool) {
	loc := c.spec.Location
	cur := t.In(loc)
	for {
		_, end := cur.ZoneBounds()
		if end.IsZero() || !end.Before(n) {
			return time.Time{}, false
		}
		_, before := cur.Zone()
		_, after := end.In(loc).Zone()
		if after > before {
			// Wall times from end+before up to end+after do not exist;
			// they are read as UTC clocks, minute by minute.
			from, to := end.Add(time.Duration(before)*time.Second).UTC(), end.Add(time.Duration(after)*time.Second).UTC()
			for w := from; w.Before(to); w = w.Add(time.Minute) {
				if c.matches(w) {
					return end, true
				}
			}
		}
		cur = end.In(loc)
	}
}

// repeated reports whether n's wall time already occurred, earlier, in the
// hour that clocks fell back over.
func (c cronSchedule) repeated(n time.Time) bool {
	local := n.In(c.spec.Location)
	start, _ := local.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := local.Zone()
	_, prev := start.Add(-time.Second).In(c.spec.Location).Zone()
	back := time.Duration(prev-now) * time.Second
	return back > 0 && n.Sub(start) < back
}

// matches reports whether the wall clock w (its fields read as they are)
// is a time of the schedule, to the minute.
func (c cronSchedule) matches(w time.Time) bool {
	s := c.spec
	bit := func(field uint64, v int) bool { return field&(1<<uint(v)) != 0 }
	if !bit(s.Minute, w.Minute()) || !bit(s.Hour, w.Hour()) || !bit(s.Month, int(w.Month())) {
		return false
	}
	dom, dow := bit(s.Dom, w.Day()), bit(s.Dow, int(w.Weekday()))
	if s.Dom&cronStar != 0 || s.Dow&cronStar != 0 { // as cron reads the two day fields
		return dom && dow
	}
	return dom || dow
}

// PageStyle is how a listing asks for its next page.
type PageStyle int

// Paging styles; see config.Paginate.
const (
	PageNone PageStyle = iota
	PageToken
	PageNumber
	PageOffset
	PageLink
	PageHasMore
)

// Paginate is a compiled config.Paginate.
type Paginate struct {
	Style PageStyle
	// Next gives the token (PageToken), sent as Param.
	Next  *transform.Expr
	Param string
	// Page numbers start at First; Size, when set, is sent as SizeParam
	// and a shorter page is the last.
	First     int
	Size      int
	SizeParam string
	// Offsets advance by the records read; Limit as for Size.
	Limit      int
	LimitParam string
	// Rel is the Link header relation that names the next page.
	Rel string
	// HasMore tells whether another page follows; AfterValue (default the
	// record id) of the last record is sent as Param.
	HasMore    *transform.Expr
	AfterValue *transform.Expr
}

// Listing is a compiled paged GET.
type Listing struct {
	System  string
	Fetcher connector.Fetcher
	// Path may hold "$cursor".
	Path string
	// Query values are jq with $cursor bound.
	Query    map[string]*transform.Expr
	Items    *transform.Expr
	Paginate Paginate
	MaxPages int
}

// Poll is a compiled poll source.
type Poll struct {
	Schedule Schedule
	Listing
	ID *transform.Expr
	// Version is nil for the default: a hash of the record.
	Version *transform.Expr
	// Cursor, with $response bound to the page, gives the next cursor; nil
	// when the source keeps none.
	Cursor *transform.Expr
	// Start is the first cursor; "" means the first run's time.
	Start string
	// Target is the source whose events the records become: the poll
	// source itself, or the webhook source it is a backstop for.
	Target string
}

// Backstop reports whether the poll backs up a webhook source.
func (p *Poll) Backstop() bool { return p.Target != "" }

// CursorVars are the variables of a listing's query values.
var CursorVars = []string{"$cursor"}

// Timed returns when a timed source runs, or nil for a webhook source.
func (s *Source) Timed() Schedule {
	switch {
	case s.Poll != nil:
		return s.Poll.Schedule
	case s.Schedule != nil:
		return s.Schedule
	case s.Reconcile != nil:
		return s.Reconcile.Schedule
	}
	return nil
}

// Systems returns the systems a timed source calls when it runs: the
// polled one, or a reconciliation's owner and mirror (once if the same);
// none for a schedule.
func (s *Source) Systems() []string {
	switch {
	case s.Poll != nil:
		return []string{s.Poll.System}
	case s.Reconcile != nil:
		return slices.Compact([]string{s.Reconcile.Owner.System, s.Reconcile.Mirror.System})
	}
	return nil
}

// schedule compiles a Timing at path.
func (cp *compiler) schedule(path string, t config.Timing) Schedule {
	switch {
	case t.Every != 0 && t.Cron != "":
		cp.errorf(cp.node(path+".cron"), path, "set every: or cron:, not both")
	case t.Every != 0:
		if t.Timezone != "" {
			cp.errorf(cp.node(path+".timezone"), path+".timezone", "applies to cron: only")
		}
		if t.Every < MinEvery {
			cp.errorf(cp.node(path+".every"), path+".every", "must be at least %s", MinEvery)
			return nil
		}
		return every(t.Every)
	case t.Cron != "":
		if strings.Contains(t.Cron, "TZ=") {
			cp.errorf(cp.node(path+".cron"), path+".cron", "set the zone with timezone:, not in the expression")
			return nil
		}
		loc := time.UTC
		if t.Timezone != "" {
			var err error
			if loc, err = time.LoadLocation(t.Timezone); err != nil {
				cp.errorf(cp.node(path+".timezone"), path+".timezone", "unknown time zone %q (want an IANA name such as Europe/Paris)", t.Timezone)
				return nil
			}
		}
		s, err := cron.ParseStandard(t.Cron)
		if err != nil {
			cp.errorf(cp.node(path+".cron"), path+".cron", "%v (want five fields: minute hour day-of-month month day-of-week, or @daily, @hourly …)", err)
			return nil
		}
		spec, _ := s.(*cron.SpecSchedule)
		if spec != nil {
			spec.Location = loc
		}
		return cronSchedule{s: s, spec: spec, desc: fmt.Sprintf("cron %q in %s", t.Cron, loc)}
	default:
		cp.errorf(cp.node(path), path, "needs every: (an interval) or cron: (a schedule)")
	}
	return nil
}

// listing compiles the request side shared by polls and reconciliations.
func (cp *compiler) listing(path string, l config.Listing, p *Plan) Listing {
	out := Listing{System: l.System, Path: l.Path, MaxPages: l.MaxPages, Query: map[string]*transform.Expr{}}
	switch sys := p.Systems[l.System]; {
	case l.System == "":
		cp.errorf(cp.node(path), path+".system", "required: the system to call")
	case !hasKey(cp.c.Systems, l.System):
		cp.errorf(cp.node(path+".system"), path+".system", "unknown system %q%s", l.System, known(slices.Sorted(maps.Keys(cp.c.Systems))))
	case sys == nil:
		// The system failed to compile; that error is reported.
	default:
		f, ok := sys.System.(connector.Fetcher)
		if !ok {
			cp.errorf(cp.node(path+".system"), path+".system", "system %q (kind %s) cannot be polled; poll through a kind: http system", l.System, sys.Kind)
		}
		out.Fetcher = f
	}
	if l.Path == "" {
		cp.errorf(cp.node(path), path+".path", "required: the path under the system's base_url, e.g. /jobs")
	}
	for _, k := range slices.Sorted(maps.Keys(l.Query)) {
		out.Query[k] = cp.expr(path+".query."+k, l.Query[k], CursorVars...)
	}
	if l.Items == "" {
		cp.errorf(cp.node(path), path+".items", "required: jq giving the records of an answer, e.g. .jobs[]")
	} else {
		out.Items = cp.expr(path+".items", l.Items)
	}
	switch {
	case l.MaxPages < 0:
		cp.errorf(cp.node(path+".max_pages"), path+".max_pages", "must be positive")
	case l.MaxPages == 0:
		out.MaxPages = DefaultMaxPages
	}
	if l.Paginate != nil {
		out.Paginate = cp.paginate(path+".paginate", *l.Paginate)
	}
	return out
}

func (cp *compiler) paginate(path string, g config.Paginate) Paginate {
	var styles []string
	var out Paginate
	if g.Next != "" || g.Param != "" && g.HasMore == "" {
		styles = append(styles, "next")
		out.Style = PageToken
		if g.Next == "" || g.Param == "" {
			cp.errorf(cp.node(path), path, "a token needs next: (jq giving it) and param: (the query parameter it is sent as)")
		} else {
			out.Next, out.Param = cp.expr(path+".next", g.Next), g.Param
		}
	}
	if g.Page != "" || g.First != nil || g.SizeParam != "" || g.Size != 0 {
		styles = append(styles, "page")
		out.Style, out.First, out.Size, out.SizeParam = PageNumber, 1, g.Size, g.SizeParam
		if g.First != nil {
			out.First = *g.First
		}
		if g.Page == "" {
			cp.errorf(cp.node(path), path+".page", "required: the page number's query parameter")
		}
		out.Param = g.Page
		if g.Size < 0 || (g.SizeParam != "" && g.Size == 0) {
			cp.errorf(cp.node(path), path+".size", "must be positive when size_param is set")
		}
	}
	if g.Offset != "" || g.LimitParam != "" || g.Limit != 0 {
		styles = append(styles, "offset")
		out.Style, out.Param, out.Limit, out.LimitParam = PageOffset, g.Offset, g.Limit, g.LimitParam
		if g.Offset == "" {
			cp.errorf(cp.node(path), path+".offset", "required: the offset's query parameter")
		}
		if g.Limit < 0 || (g.LimitParam != "" && g.Limit == 0) {
			cp.errorf(cp.node(path), path+".limit", "must be positive when limit_param is set")
		}
	}
	if g.Link != "" {
		styles = append(styles, "link")
		out.Style, out.Rel = PageLink, g.Link
	}
	if g.HasMore != "" || g.After != "" || g.AfterValue != "" {
		styles = append(styles, "has_more")
		out.Style, out.Param = PageHasMore, g.After
		if g.HasMore == "" || g.After == "" {
			cp.errorf(cp.node(path), path, "has_more paging needs has_more: (jq, e.g. .has_more) and after: (the parameter, e.g. starting_after)")
		} else {
			out.HasMore = cp.expr(path+".has_more", g.HasMore)
		}
		if g.AfterValue != "" {
			out.AfterValue = cp.expr(path+".after_value", g.AfterValue)
		}
	}
	switch len(styles) {
	case 0:
		cp.errorf(cp.node(path), path, "set one paging style: next+param, page, offset, link or has_more+after")
	case 1:
	default:
		cp.errorf(cp.node(path), path, "mixes paging styles (%s); set one", strings.Join(styles, ", "))
	}
	return out
}

// poll compiles a poll source.
func (cp *compiler) poll(path, name string, s config.Source, p *Plan) *Poll {
	pp := path + ".poll"
	c := s.Poll
	out := &Poll{Schedule: cp.schedule(pp, c.Timing), Listing: cp.listing(pp, c.Listing, p), Start: c.Start}
	if c.ID == "" {
		cp.errorf(cp.node(pp), pp+".id", "required: jq giving a record's id, e.g. .id")
	} else {
		out.ID = cp.expr(pp+".id", c.ID)
	}
	if c.Version != "" {
		out.Version = cp.expr(pp+".version", c.Version)
	}
	if c.Cursor != "" {
		out.Cursor = cp.expr(pp+".cursor", c.Cursor, "$response")
	} else if c.Start != "" {
		cp.errorf(cp.node(pp+".start"), pp+".start", "needs cursor: (a start is the first cursor)")
	}
	if out.Paginate.Style == PageHasMore && out.Paginate.AfterValue == nil {
		out.Paginate.AfterValue = out.ID
	}
	if s.Key != "" {
		cp.errorf(cp.node(path+".key"), path+".key", "a poll source's events are keyed by record id and version; remove key:")
	}
	if c.BackstopFor != "" {
		out.Target = cp.backstop(pp+".backstop_for", name, c)
	}
	return out
}

// backstop checks that a poll can back up webhook source w: both must key
// records the same way, by id and version.
func (cp *compiler) backstop(path, name string, c *config.Poll) string {
	w := c.BackstopFor
	ws, ok := cp.c.Sources[w]
	switch {
	case !ok:
		cp.errorf(cp.node(path), path, "unknown source %q%s", w, known(slices.Sorted(maps.Keys(cp.c.Sources))))
		return ""
	case w == name || ws.Webhook == nil:
		cp.errorf(cp.node(path), path, "source %q is not a webhook source", w)
		return ""
	case ws.RecordID == "" || ws.Version == "":
		cp.errorf(cp.node(path), path, "source %q needs record_id: and version: (jq), so its webhooks and this poll key a record the same way", w)
	case ws.Key != "":
		cp.errorf(cp.node("sources."+w+".key"), "sources."+w+".key", "a source backed up by a poll (%s) is keyed by record_id@version; remove key:", name)
	}
	if c.Version == "" {
		cp.errorf(cp.node(path), strings.TrimSuffix(path, "backstop_for")+"version", "required with backstop_for: the webhook's version: and this must give the same value for the same record")
	}
	return w
}

// recordKey compiles a webhook source's record_id and version.
func (cp *compiler) recordKey(path string, s config.Source, out *Source) {
	if s.RecordID != "" {
		out.RecordID = cp.expr(path+".record_id", s.RecordID)
	}
	if s.Version != "" {
		out.Version = cp.expr(path+".version", s.Version)
		if s.RecordID == "" {
			cp.errorf(cp.node(path+".version"), path+".version", "needs record_id:")
		}
	}
}
