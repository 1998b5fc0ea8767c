package httpcall_test

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/httpcall"
)

const token = "s3cr3t-T0ken/+="

func httpKind(t testing.TB) *connector.Kind {
	t.Helper()
	r := connector.NewRegistry()
	httpcall.Register(r)
	k, ok := r.Kind("http")
	require.True(t, ok)
	return k
}

func openSystem(t testing.TB, cfg *httpcall.Config) connector.System {
	t.Helper()
	sys, err := httpKind(t).Open(connector.OpenParams{Name: "crm", Config: cfg})
	require.NoError(t, err)
	return sys
}

// call runs the request action of sys with idempotency key "idem-1".
func call(t testing.TB, sys connector.System, in map[string]any) (connector.Result, error) {
	t.Helper()
	act, ok := sys.Action("request")
	require.True(t, ok)
	return act.Do(t.Context(), connector.Request{Input: in, IdempotencyKey: "idem-1"})
}

func TestRegister(t *testing.T) {
	t.Parallel()

	k := httpKind(t)
	require.IsType(t, &httpcall.Config{}, k.NewConfig())
	spec, ok := k.Action("request")
	require.True(t, ok)
	require.Len(t, spec.Inputs, 5)

	sys := openSystem(t, &httpcall.Config{BaseURL: "https://api.example.com"})
	_, ok = sys.Action("nope")
	require.False(t, ok)
}

func TestOpenValidation(t *testing.T) {
	t.Parallel()

	good := "https://api.example.com/v1"
	tests := []struct {
		name    string
		cfg     *httpcall.Config
		wantErr string
	}{
		{"missing base_url", &httpcall.Config{}, "base_url: required"},
		{"relative base_url", &httpcall.Config{BaseURL: "/v1"}, "base_url: must be an absolute http or https URL"},
		{"ftp scheme", &httpcall.Config{BaseURL: "ftp://example.com"}, "base_url: must be an absolute http or https URL"},
		{"no host", &httpcall.Config{BaseURL: "https:///v1"}, "base_url: must be an absolute http or https URL"},
		{"unparsable", &httpcall.Config{BaseURL: "https://x:port" + token}, "base_url: must be an absolute http or https URL"},
		{"credentials in url", &httpcall.Config{BaseURL: "https://ann:hunter2@x"}, "base_url: must not contain credentials"},
		{"query in url", &httpcall.Config{BaseURL: "https://x/?key=" + token}, "base_url: must not contain a query"},
		{"negative timeout", &httpcall.Config{BaseURL: good, Timeout: -1}, "timeout: must not be negative"},
		{"bad header name", &httpcall.Config{BaseURL: good, Headers: map[string]string{"X Bad": "v"}}, `headers: "X Bad" is not a valid header name`},
		{"header newline", &httpcall.Config{BaseURL: good, Headers: map[string]string{"X-A": "a\nb"}}, "headers.X-A: value must not contain control characters"},
		{"two auth methods", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{
			Bearer: token, APIKey: &httpcall.APIKeyAuth{Header: "X-Key", Value: token},
		}}, "auth: set at most one of bearer, basic, api_key and oauth2"},
		{"bearer newline", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{Bearer: token + "\n"}}, "auth.bearer: must not contain control characters"},
		{"basic without user", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{
			Basic: &httpcall.BasicAuth{Password: token},
		}}, "auth.basic.user: required"},
		{"api_key header and query", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{
			APIKey: &httpcall.APIKeyAuth{Header: "X-Key", Query: "key", Value: token},
		}}, "auth.api_key: set exactly one of header and query"},
		{"api_key neither", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{
			APIKey: &httpcall.APIKeyAuth{Value: token},
		}}, "auth.api_key: set exactly one of header and query"},
		{"api_key without value", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{
			APIKey: &httpcall.APIKeyAuth{Query: "key"},
		}}, "auth.api_key.value: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := httpKind(t).Open(connector.OpenParams{Name: "crm", Config: tt.cfg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), token)
		})
	}

	t.Run("wrong config type", func(t *testing.T) {
		t.Parallel()
		_, err := httpKind(t).Open(connector.OpenParams{Name: "crm", Config: struct{}{}})
		require.ErrorContains(t, err, "want *httpcall.Config")
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		auth       httpcall.Auth
		wantHeader string // "Name: value", or "" for none
		wantQuery  string // substring of the request URI
	}{
		{"bearer", httpcall.Auth{Bearer: token}, "Authorization: Bearer " + token, ""},
		{"basic", httpcall.Auth{Basic: &httpcall.BasicAuth{User: "ann", Password: token}},
			"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("ann:"+token)), ""},
		{"api_key header", httpcall.Auth{APIKey: &httpcall.APIKeyAuth{Header: "x-api-key", Value: token}},
			"X-Api-Key: " + token, ""},
		{"api_key query", httpcall.Auth{APIKey: &httpcall.APIKeyAuth{Query: "key", Value: token}},
			"", "key=s3cr3t-T0ken%2F%2B%3D"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			sys := openSystem(t, &httpcall.Config{BaseURL: up.URL, Auth: tt.auth})
			_, err := call(t, sys, map[string]any{
				"path":    "/me",
				"query":   map[string]any{"key": "step-wins?", "a": "b"},
				"headers": map[string]any{"Authorization": "step", "X-Api-Key": "step"},
			})
			require.NoError(t, err)
			got := up.Last(t)
			if name, value, ok := strings.Cut(tt.wantHeader, ": "); ok {
				require.Equal(t, []string{value}, got.Header.Values(name))
			}
			require.Contains(t, got.RequestURI, tt.wantQuery)
			require.Contains(t, got.RequestURI, "a=b")
		})
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()

	sysHeaders := map[string]string{"X-System": "sys", "X-Both": "sys", "Idempotency-Key": "sys"}
	tests := []struct {
		name       string
		in         map[string]any
		wantMethod string
		wantHeader map[string]string // "" means absent
		wantBody   string
	}{
		{
			name: "precedence and json body",
			in: map[string]any{
				"headers": map[string]any{"x-both": "step", "Idempotency-Key": "step", "X-Null": nil},
				"body":    map[string]any{"name": "<Ann>", "n": json.Number("12345678901234567890")},
			},
			wantMethod: http.MethodPost,
			wantHeader: map[string]string{
				"X-System": "sys", "X-Both": "step", "Idempotency-Key": "idem-1", "X-Null": "",
				"User-Agent": "switchboard", "Content-Type": "application/json",
			},
			wantBody: `{"n":12345678901234567890,"name":"<Ann>"}`,
		},
		{
			// As jq prints it (tojson): NaN is null, an infinity the
			// largest float, "\u2028" and "&" as they are.
			name: "json body as jq prints it",
			in: map[string]any{"body": []any{math.NaN(), math.Inf(1), "a\u2028&\x01", 1.5e300, 7,
				map[string]any{"b": false, "a": nil}}},
			wantMethod: http.MethodPost,
			wantHeader: map[string]string{"Content-Type": "application/json"},
			wantBody:   "[null,1.7976931348623157e+308,\"a\u2028&\\u0001\",1.5e+300,7,{\"a\":null,\"b\":false}]",
		},
		{
			name:       "string body",
			in:         map[string]any{"method": "put", "body": "a,b\n1,2"},
			wantMethod: http.MethodPut,
			wantHeader: map[string]string{"Content-Type": "text/plain; charset=utf-8"},
			wantBody:   "a,b\n1,2",
		},
		{
			name: "step content type and user agent",
			in: map[string]any{
				"headers": map[string]any{"Content-Type": "text/csv", "User-Agent": "acme/1"},
				"body":    "a,b",
			},
			wantMethod: http.MethodPost,
			wantHeader: map[string]string{"Content-Type": "text/csv", "User-Agent": "acme/1"},
			wantBody:   "a,b",
		},
		{
			name:       "no body is a GET",
			in:         map[string]any{"path": "/x", "body": nil},
			wantMethod: http.MethodGet,
			wantHeader: map[string]string{"Content-Type": "", "Idempotency-Key": "idem-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, nil)
			sys := openSystem(t, &httpcall.Config{BaseURL: up.URL, Headers: sysHeaders})
			_, err := call(t, sys, tt.in)
			require.NoError(t, err)
			got := up.Last(t)
			require.Equal(t, tt.wantMethod, got.Method)
			for name, want := range tt.wantHeader {
				if want == "" {
					require.Empty(t, got.Header.Values(name), name)
				} else {
					require.Equal(t, []string{want}, got.Header.Values(name), name)
				}
			}
			require.Equal(t, tt.wantBody, got.Body)
		})
	}
}

func TestPathJoin(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, nil)
	tests := []struct {
		name  string
		base  string
		path  string
		query map[string]any
		want  string
	}{
		{"leading slash", "/api/v1", "/contacts", nil, "/api/v1/contacts"},
		{"no leading slash", "/api/v1/", "contacts", nil, "/api/v1/contacts"},
		{"empty path", "/api/v1", "", nil, "/api/v1"},
		{"trailing slash kept", "/api/v1", "/contacts/", nil, "/api/v1/contacts/"},
		{"root base", "", "/contacts", nil, "/contacts"},
		{"dots inside base", "/api/v1", "/a/./b/../c", nil, "/api/v1/a/c"},
		{"encoded slash kept", "/api/v1", "/projects/group%2Fname", nil, "/api/v1/projects/group%2Fname"},
		{"colon in first segment", "/api/v1", "projects:list", nil, "/api/v1/projects:list"},
		{"path query merged", "/api/v1", "/contacts?limit=5&page=2", map[string]any{"limit": 10.0}, "/api/v1/contacts?limit=10&page=2"},
		{"query values", "", "/q", map[string]any{
			"s": "a b", "f": 1.5, "i": 10.0, "n": json.Number("7"), "b": true, "l": []any{"x", 2.0}, "z": nil,
		}, "/q?b=true&f=1.5&i=10&l=x&l=2&n=7&s=a+b"},
		{"absolute url same host under base", "/api/v1", up.URL + "/api/v1/contacts?cursor=abc", nil, "/api/v1/contacts?cursor=abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sys := openSystem(t, &httpcall.Config{BaseURL: up.URL + tt.base})
			in := map[string]any{"path": tt.path}
			if tt.query != nil {
				in["query"] = tt.query
			}
			res, err := call(t, sys, in)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.Status)
			// Parallel subtests share up, so find this case's request.
			require.True(t, containsURI(up.Requests(), tt.want), "no request for %s", tt.want)
		})
	}
}

func containsURI(reqs []connectortest.Request, uri string) bool {
	for _, r := range reqs {
		if r.RequestURI == uri {
			return true
		}
	}
	return false
}

func TestPathEscapeRejected(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, nil)
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL + "/api/v1"})
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"absolute url other host", "https://evil.example/x", "base_url's host"},
		{"absolute url other port", "http://127.0.0.1:1/api/v1/x", "base_url's host"},
		{"absolute url other scheme", strings.Replace(up.URL, "http:", "https:", 1) + "/api/v1/x", "base_url's host"},
		{"absolute url outside base path", up.URL + "/admin", "under base_url's path"},
		{"absolute url dots out of base path", up.URL + "/api/v1/../v2", "under base_url's path"},
		{"host-relative url", "//evil.example/x", "host-relative"},
		{"dot dot beyond base", "../../etc/passwd", "must not leave base_url's path"},
		{"dot dot after segment", "/a/../../x", "must not leave base_url's path"},
		{"encoded dot dot", "/%2e%2e/%2E%2E/etc", "must not leave base_url's path"},
		{"dot dot with params", "/..;/admin", "must not leave base_url's path"},
		{"dots behind encoded slash", "/a%2F..%2F..%2Fadmin", "encoded slashes"},
		{"dots behind backslash", `/a\..\..\admin`, "encoded slashes"},
		{"credentials", "http://user@" + strings.TrimPrefix(up.URL, "http://") + "/api/v1", "base_url's host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := call(t, sys, map[string]any{"path": tt.path})
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.ErrorContains(t, err, `input "path": `)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	// Runs after the parallel subtests above have finished.
	t.Cleanup(func() { require.Zero(t, up.Count(), "a rejected request reached the server") })
}

func TestInputErrors(t *testing.T) {
	t.Parallel()

	up := connectortest.NewUpstream(t, nil)
	sys := openSystem(t, &httpcall.Config{BaseURL: up.URL})
	tests := []struct {
		name    string
		in      map[string]any
		wantErr string
	}{
		{"path not a string", map[string]any{"path": 3.0}, `input "path": want a string, got number`},
		{"method not a string", map[string]any{"method": true}, `input "method": want a string, got bool`},
		{"bad method", map[string]any{"method": "GE T"}, `input "method": "GE T" is not a valid HTTP method`},
		{"query not an object", map[string]any{"query": []any{"a"}}, `input "query": want an object, got array`},
		{"query nested object", map[string]any{"query": map[string]any{"a": map[string]any{}}},
			`input "query": key "a": want a string, number, bool or an array of them, got object`},
		{"headers not strings", map[string]any{"headers": map[string]any{"X-A": 1.0}}, `input "headers": key "X-A": want a string, got number`},
		{"bad header name", map[string]any{"headers": map[string]any{"X A": "v"}}, `input "headers": "X A" is not a valid header name`},
		{"header newline", map[string]any{"headers": map[string]any{"X-A": "v\r\nX-B: w"}}, `input "headers": key "X-A": value must not contain control characters`},
		{"unknown input", map[string]any{"url": "/x"}, `input "url": unknown input`},
		// Not a jq value: only a bug of ours could pass one; it fails the
		// step, not the node.
		{"body of a Go type", map[string]any{"body": []string{"a"}}, `input "body": cannot encode as JSON: invalid type: []string ([a])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := call(t, sys, tt.in)
			require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
			require.EqualError(t, err, tt.wantErr)
			require.Zero(t, res.Status)
		})
	}
	t.Cleanup(func() { require.Zero(t, up.Count()) })
}
