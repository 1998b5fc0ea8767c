package poll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/limit"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

// request is one page request: a path under the system's base URL (or
// an absolute URL a Link header gave) and its query.
type request struct {
	path  string
	query url.Values
}

// page is one decoded answer.
type page struct {
	body   any
	items  []any
	header http.Header
	url    *url.URL
}

// pageCursor is where offset and number paging stand.
type pageCursor struct {
	number int
	offset int
}

// firstRequest builds a run's first request from the listing and $cursor.
func firstRequest(ctx context.Context, l *flow.Listing, cursor any) (request, error) {
	// Before the first cursor (a source without cursor:) "$cursor" is
	// empty, as a null query value is left out.
	s, _ := cursor.(string)
	path := strings.ReplaceAll(l.Path, "$cursor", url.PathEscape(s))
	q := url.Values{}
	for k, e := range l.Query {
		v, err := e.Eval(ctx, nil, cursor)
		if err != nil {
			return request{}, fmt.Errorf("query %s: %w", k, err)
		}
		if v == nil {
			continue // like steps: a null parameter is left out
		}
		s, err := paramText(v)
		if err != nil {
			return request{}, fmt.Errorf("query %s: %w", k, err)
		}
		q.Set(k, s)
	}
	g := l.Paginate
	switch g.Style {
	case flow.PageNumber:
		q.Set(g.Param, strconv.Itoa(g.First))
		if g.SizeParam != "" {
			q.Set(g.SizeParam, strconv.Itoa(g.Size))
		}
	case flow.PageOffset:
		q.Set(g.Param, "0")
		if g.LimitParam != "" {
			q.Set(g.LimitParam, strconv.Itoa(g.Limit))
		}
	}
	return request{path: path, query: q}, nil
}

// paramText renders a query value: strings as they are, numbers exactly.
func paramText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, number or bool, got %T", v)
}

// decodePage parses an answer and extracts its records.
func decodePage(ctx context.Context, l *flow.Listing, resp connector.FetchResponse) (*page, error) {
	body, err := transform.Decode(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("the answer is not JSON: %w", err)
	}
	items, err := l.Items.EvalAll(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("items: %w", err)
	}
	return &page{body: body, items: items, header: resp.Header, url: resp.URL}, nil
}

// nextRequest returns the request of the page after pg, or false when pg
// was the last.
func nextRequest(ctx context.Context, l *flow.Listing, prev request, pg *page, cur *pageCursor) (request, bool, error) {
	g := l.Paginate
	q := cloneValues(prev.query)
	switch g.Style {
	case flow.PageToken:
		v, err := g.Next.Eval(ctx, pg.body)
		if err != nil {
			return request{}, false, err
		}
		if v == nil || v == "" {
			return request{}, false, nil
		}
		s, err := paramText(v)
		if err != nil {
			return request{}, false, fmt.Errorf("%s: %w", g.Next, err)
		}
		q.Set(g.Param, s)
	case flow.PageNumber:
		if len(pg.items) == 0 || g.Size > 0 && len(pg.items) < g.Size {
			return request{}, false, nil
		}
		cur.number++
		q.Set(g.Param, strconv.Itoa(g.First+cur.number))
	case flow.PageOffset:
		if len(pg.items) == 0 || g.Limit > 0 && len(pg.items) < g.Limit {
			return request{}, false, nil
		}
		cur.offset += len(pg.items)
		q.Set(g.Param, strconv.Itoa(cur.offset))
	case flow.PageLink:
		next := linkTarget(pg.header, g.Rel)
		if next == "" {
			return request{}, false, nil
		}
		u, err := url.Parse(next)
		if err != nil {
			return request{}, false, fmt.Errorf("link header: %w", err)
		}
		if pg.url != nil {
			u = pg.url.ResolveReference(u)
		}
		// The link carries its own query; the system checks that it stays
		// under base_url.
		return request{path: u.String()}, true, nil
	case flow.PageHasMore:
		more, err := g.HasMore.Eval(ctx, pg.body)
		if err != nil {
			return request{}, false, err
		}
		if more != true || len(pg.items) == 0 {
			return request{}, false, nil
		}
		v, err := g.AfterValue.Eval(ctx, pg.items[len(pg.items)-1])
		if err != nil {
			return request{}, false, err
		}
		s, err := flow.KeyText(g.AfterValue, v)
		if err != nil {
			return request{}, false, err
		}
		q.Set(g.Param, s)
	default:
		return request{}, false, nil
	}
	return request{path: prev.path, query: q}, true, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// linkTarget returns the URL of the RFC 8288 Link header entry with
// relation rel, or "".
func linkTarget(h http.Header, rel string) string {
	for _, line := range h.Values("Link") {
		for _, link := range splitLinks(line) {
			link = strings.TrimSpace(link)
			end := strings.Index(link, ">")
			if !strings.HasPrefix(link, "<") || end < 0 {
				continue
			}
			target := link[1:end]
			for _, param := range strings.Split(link[end+1:], ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				// rel may hold several space-separated relations.
				for _, r := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
					if strings.EqualFold(r, rel) {
						return target
					}
				}
			}
		}
	}
	return ""
}

// splitLinks splits a Link header value at the commas between links (not
// those inside <...> or quotes).
func splitLinks(s string) []string {
	var out []string
	inURL, inQuote, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '<' && !inQuote:
			inURL = true
		case c == '>' && !inQuote:
			inURL = false
		case c == '"' && !inURL:
			inQuote = !inQuote
		case c == ',' && !inURL && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// fetch reads one page through the system's gate (its rate limit,
// concurrency cap, 429 back-off and circuit, shared with the executor),
// retrying transient failures a few times and honouring Retry-After.
func (p *Poller) fetch(ctx context.Context, l *flow.Listing, req request) (connector.FetchResponse, error) {
	gate := p.cfg.Gates[l.System]
	for attempt := 1; ; attempt++ {
		// Before each try (Acquire would let a read through as the probe
		// of a credential pause), and after a hold, which may be a pause
		// applied since.
		if err := p.stop(l.System); err != nil {
			return connector.FetchResponse{}, err
		}
		var done func(limit.Outcome, time.Duration) bool
		if gate != nil {
			var err error
			done, err = gate.Acquire(ctx)
			if h, ok := errors.AsType[*limit.Hold](err); ok {
				if err := p.stop(l.System); err != nil {
					return connector.FetchResponse{}, err
				}
				if h.Operator {
					// No probe until a resume, which may be hours away:
					// the run is skipped, not failed (see step).
					return connector.FetchResponse{}, &pausedError{system: l.System}
				}
				if err := p.sleep(ctx, h.Until.Sub(p.cfg.NowFunc())); err != nil {
					return connector.FetchResponse{}, fmt.Errorf("%s (%w)", h.Reason, err)
				}
				attempt--
				continue
			}
			if err != nil {
				return connector.FetchResponse{}, err
			}
		}
		resp, err := l.Fetcher.Fetch(ctx, connector.FetchRequest{Path: req.path, Query: req.query})
		if done != nil && done(gateOutcome(resp.Status, err)) && p.cfg.ResumedFunc != nil {
			// Lifted here only so far: the store's pause would pause the
			// gate again at the next sync, and the held runs would wait.
			p.cfg.ResumedFunc(ctx, l.System)
		}
		if err == nil {
			return resp, nil
		}
		if connector.IsPermanent(err) || attempt == pageAttempts || ctx.Err() != nil {
			return resp, err
		}
		wait := p.cfg.RetryBase << (attempt - 1)
		wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		if ra, ok := connector.RetryAfterOf(err); ok {
			wait = ra
		}
		p.cfg.Logger.Warn("poll page failed; asking again", "system", l.System, "attempt", attempt, "in", wait, "error", err)
		if serr := p.sleep(ctx, wait); serr != nil {
			return resp, fmt.Errorf("%w (%w)", err, serr)
		}
	}
}

// stop returns StopFunc's error for a read of system, if any.
func (p *Poller) stop(system string) error {
	if p.cfg.StopFunc == nil {
		return nil
	}
	return p.cfg.StopFunc(system)
}

// sleep waits d, or fails at once when d is longer than maxWait (the run
// ends and the next one continues) or ctx ends.
func (p *Poller) sleep(ctx context.Context, d time.Duration) error {
	if d > maxWait {
		return fmt.Errorf("%w: %s; the next run continues", errWaitTooLong, d.Round(time.Second))
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gateOutcome is connector.GateOutcome for a page read, with a 401 or 403
// reported as refused, not unauthorized: pausing a system is the
// executor's call (it records the pause in the store for every node), and
// a failed poll run is reported on its own.
func gateOutcome(status int, err error) (limit.Outcome, time.Duration) {
	o, wait := connector.GateOutcome(status, err)
	if o == limit.Unauthorized {
		o = limit.Refused
	}
	return o, wait
}
