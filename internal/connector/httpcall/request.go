package httpcall

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

var requestSpec = connector.ActionSpec{
	Name:    actionRequest,
	Doc:     "Sends one HTTP request to a path under the system's base_url.",
	Outputs: "the decoded JSON response, or the response text when it is not JSON",
	// Writes is "": what a generic request writes depends on the API, so
	// the step declares it.
	Writes: "",
	Inputs: []connector.Input{
		{Name: "method", Type: connector.TypeString, Doc: `HTTP method; defaults to "POST" when body is set, else "GET".`},
		{Name: "path", Type: connector.TypeString, Doc: `Path joined under base_url's path, e.g. "/contacts"; may carry a query. An absolute URL must be on base_url's host and path.`},
		{Name: "query", Type: connector.TypeObject, Doc: "Query parameters: an object of strings, numbers, bools or arrays of them; null values are left out."},
		{Name: "headers", Type: connector.TypeObject, Doc: "Request headers: an object of strings, overriding the system's headers; null values are left out."},
		// body is any JSON value: a string is sent as text, the rest as JSON.
		{Name: "body", Type: connector.TypeAny, Doc: "Request body: a string is sent as-is (text/plain unless headers set Content-Type), any other value as JSON, as jq's tojson prints it (keys sorted, NaN as null)."},
	},
}

// requestAction is the "request" action of one system.
type requestAction struct {
	sys *system
}

// input is a request's `with:` map, checked and typed.
type input struct {
	method  string
	path    string
	query   url.Values
	headers map[string]string
	body    any // nil when not set
}

// Do sends one request. Invalid inputs and paths outside base_url are
// permanent errors; statusError says how a non-2xx answer is classified.
//
// With OAuth2, a 401 answer drops the cached token and the request is sent
// once more with a fresh one: the token may have been revoked or rotated
// before its expiry. A second 401 is final. Both requests carry the same
// Idempotency-Key, and only the second one's answer is recorded.
func (a *requestAction) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	in, err := parseInput(req.Input)
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	display := in.method + " " + cmp.Or(in.path, "/")
	resp, token, err := a.send(ctx, in, req.IdempotencyKey)
	if err != nil {
		return failedResult(err), err
	}
	if resp.StatusCode == http.StatusUnauthorized && a.sys.oauth != nil {
		webapi.Discard(resp)
		a.sys.oauth.invalidate(ctx, token)
		if resp, token, err = a.send(ctx, in, req.IdempotencyKey); err != nil {
			return failedResult(err), err
		}
	}
	return a.sys.readResponse(ctx, display, token, resp)
}

// failedResult is the Result of a call that got no API response: empty,
// unless the token endpoint answered, whose status and body it then holds.
func failedResult(err error) connector.Result {
	if te, ok := errors.AsType[*tokenStatusError](err); ok {
		return connector.Result{Status: te.status, Body: te.body}
	}
	return connector.Result{}
}

// send builds and sends one request, with a bearer token from the token
// source under OAuth2. It returns the token it sent (or "") so errors can
// redact it. Its errors are classified.
func (a *requestAction) send(ctx context.Context, in input, idempotencyKey string) (*http.Response, string, error) {
	token := ""
	if a.sys.oauth != nil {
		var err error
		if token, err = a.sys.oauth.token(ctx); err != nil {
			return nil, "", err
		}
	}
	httpReq, err := a.sys.newRequest(ctx, in, idempotencyKey, token)
	if err != nil {
		return nil, "", connector.Permanent(err)
	}
	resp, err := a.sys.client.Do(httpReq)
	if err != nil {
		return nil, "", a.sys.transportError(ctx, in.method+" "+cmp.Or(in.path, "/"), token, err)
	}
	return resp, token, nil
}

func parseInput(m map[string]any) (input, error) {
	var in input
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		var err error
		switch k {
		case "method":
			in.method, err = webapi.OptionalString(v)
			if err == nil && in.method != "" {
				in.method = strings.ToUpper(in.method)
				if !validToken(in.method) {
					err = fmt.Errorf("%q is not a valid HTTP method", in.method)
				}
			}
		case "path":
			in.path, err = webapi.OptionalString(v)
		case "query":
			in.query, err = parseQuery(v)
		case "headers":
			in.headers, err = parseHeaders(v)
		case "body":
			in.body = v
		default:
			err = errors.New("unknown input")
		}
		if err != nil {
			return input{}, fmt.Errorf("input %q: %w", k, err)
		}
	}
	if in.method == "" {
		in.method = http.MethodGet
		if in.body != nil {
			in.method = http.MethodPost
		}
	}
	return in, nil
}

func parseQuery(v any) (url.Values, error) {
	m, err := webapi.OptionalObject(v)
	if m == nil {
		return nil, err
	}
	q := make(url.Values, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		items, isList := m[k].([]any)
		if !isList {
			items = []any{m[k]}
		}
		for _, item := range items {
			s, ok := webapi.ScalarString(item)
			if !ok {
				return nil, fmt.Errorf("key %q: want a string, number, bool or an array of them, got %s", k, webapi.TypeName(item))
			}
			if item != nil {
				q.Add(k, s)
			}
		}
	}
	return q, nil
}

func parseHeaders(v any) (map[string]string, error) {
	m, err := webapi.OptionalObject(v)
	if m == nil {
		return nil, err
	}
	h := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch s := m[k].(type) {
		case nil:
		case string:
			if !validToken(k) {
				return nil, fmt.Errorf("%q is not a valid header name", k)
			}
			if !validHeaderValue(s) {
				return nil, fmt.Errorf("key %q: value must not contain control characters", k)
			}
			h[k] = s
		default:
			return nil, fmt.Errorf("key %q: want a string, got %s", k, webapi.TypeName(s))
		}
	}
	return h, nil
}

// newRequest builds the HTTP request for in; a non-empty accessToken is sent
// as a bearer token. Its errors are all permanent.
func (s *system) newRequest(ctx context.Context, in input, idempotencyKey, accessToken string) (*http.Request, error) {
	u, err := s.resolveURL(in.path, in.query)
	if err != nil {
		return nil, fmt.Errorf("input \"path\": %w", err)
	}

	var body []byte
	contentType := ""
	switch b := in.body.(type) {
	case nil:
	case string:
		body, contentType = []byte(b), "text/plain; charset=utf-8"
	default:
		if body, err = marshalBody(b); err != nil {
			return nil, fmt.Errorf("input \"body\": %w", err)
		}
		contentType = "application/json"
	}

	// A *bytes.Reader lets net/http set GetBody, so it can resend the body
	// when a stale keep-alive connection fails before any response.
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	httpReq, err := http.NewRequestWithContext(ctx, in.method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}

	h := s.headers.Clone()
	for k, v := range in.headers {
		h.Set(k, v)
	}
	if s.auth.header != "" {
		h.Set(s.auth.header, s.auth.headerValue)
	}
	if accessToken != "" {
		h.Set("Authorization", "Bearer "+accessToken)
	}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", "switchboard")
	}
	if contentType != "" && h.Get("Content-Type") == "" {
		h.Set("Content-Type", contentType)
	}
	httpReq.Header = h
	return httpReq, nil
}

// resolveURL joins path under the base URL and adds the query. The result
// always has the base URL's scheme and host, and a path under its path.
func (s *system) resolveURL(path string, query url.Values) (*url.URL, error) {
	if strings.HasPrefix(path, "//") {
		return nil, errors.New("must be a path, not a host-relative URL")
	}
	p, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if p.Scheme != "" && p.Opaque != "" {
		// "projects:list" parses as scheme "projects"; it is a relative path.
		if p, err = url.Parse("./" + path); err != nil {
			return nil, fmt.Errorf("invalid URL: %w", err)
		}
	}

	var segs []segment
	if p.Scheme != "" || p.Host != "" {
		if p.User != nil || origin(p) != s.origin {
			return nil, fmt.Errorf("URL must be on base_url's host, not %s://%s", p.Scheme, p.Host)
		}
		if segs, err = resolvePath(nil, 0, p.EscapedPath()); err != nil {
			return nil, err
		}
		if len(segs) < len(s.baseSegs) || !slices.EqualFunc(segs[:len(s.baseSegs)], s.baseSegs, segment.equal) {
			return nil, errors.New("URL must be under base_url's path")
		}
	} else {
		base := slices.Clip(s.baseSegs)
		if segs, err = resolvePath(base, len(base), p.EscapedPath()); err != nil {
			return nil, err
		}
	}

	u := &url.URL{Scheme: s.base.Scheme, Host: s.base.Host, RawQuery: p.RawQuery}
	for _, seg := range segs {
		u.Path += "/" + seg.dec
		u.RawPath += "/" + seg.esc
	}

	if len(query) > 0 || s.auth.query != "" {
		q, err := url.ParseQuery(p.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("invalid query: %w", err)
		}
		maps.Copy(q, query)
		if s.auth.query != "" {
			q.Set(s.auth.query, s.auth.queryValue)
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// segment is one path segment, escaped as sent and decoded for comparison.
type segment struct{ esc, dec string }

func (a segment) equal(b segment) bool { return a.dec == b.dec }

// resolvePath appends the segments of the escaped path to stack, resolving
// "." and "..". A ".." may not pop below floor: that would leave the base
// path. Encoded dots and slashes count, because many servers decode them
// before routing.
func resolvePath(stack []segment, floor int, escaped string) ([]segment, error) {
	if escaped == "" {
		return stack, nil
	}
	for _, esc := range strings.Split(strings.TrimPrefix(escaped, "/"), "/") {
		dec, err := url.PathUnescape(esc)
		if err != nil {
			return nil, fmt.Errorf("invalid path: %w", err)
		}
		switch dotSegment(dec) {
		case ".":
			continue
		case "..":
			if len(stack) <= floor {
				return nil, errors.New(`".." must not leave base_url's path`)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if strings.ContainsAny(dec, `/\`) {
			for part := range strings.FieldsFuncSeq(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
				if dotSegment(part) != "" {
					return nil, errors.New("path segment must not hide dot segments behind encoded slashes")
				}
			}
		}
		stack = append(stack, segment{esc: esc, dec: dec})
	}
	return stack, nil
}

// dotSegment returns "." or ".." when seg is one, else "". A ";params"
// suffix is ignored, since some servers (Tomcat) strip it before resolving.
func dotSegment(seg string) string {
	seg, _, _ = strings.Cut(seg, ";")
	if seg == "." || seg == ".." {
		return seg
	}
	return ""
}

// marshalBody encodes a jq value as JSON the way jq prints it (tojson): keys
// sorted, no HTML escaping, NaN as null and infinities as the largest
// float. gojq's encoder writes the values jq produces directly, without
// encoding/json's reflection over map[string]any: 48 -> 35 allocations per
// request in BenchmarkNewRequest, and the body's share of the node's CPU
// 1.9% -> 0.9% (docs/performance.md). It panics on any other Go type; the step's input
// is always a jq value, so that would be our bug, and it fails this step
// instead of the node.
func marshalBody(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot encode as JSON: %v", r)
		}
	}()
	return gojq.Marshal(v)
}
