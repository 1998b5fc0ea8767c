package httpcall_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/httpcall"
)

const (
	clientID     = "switchboard-client"
	clientSecret = "cl1ent-S3cret/+= x"
)

// tokenServer is a fake OAuth2 token endpoint. Each grant it makes is a new
// token, "tok-1", "tok-2", …, unless answer overrides the response.
type tokenServer struct {
	URL   string
	count atomic.Int64
	mu    sync.Mutex // guards forms
	forms []url.Values
	auths []string // Authorization headers, in order
}

// newTokenServer starts a token endpoint. answer, when not nil, writes the
// response for grant n (1-based) instead of a token valid for expiresIn.
func newTokenServer(t testing.TB, expiresIn int, answer func(w http.ResponseWriter, r *http.Request, n int64)) *tokenServer {
	t.Helper()
	ts := &tokenServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.count.Add(1)
		require.NoError(t, r.ParseForm())
		ts.mu.Lock()
		ts.forms = append(ts.forms, r.PostForm)
		ts.auths = append(ts.auths, r.Header.Get("Authorization"))
		ts.mu.Unlock()
		if answer != nil {
			answer(w, r, n)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("tok-%d", n), "token_type": "Bearer", "expires_in": expiresIn,
		})
	}))
	t.Cleanup(srv.Close)
	ts.URL = srv.URL + "/oauth/token"
	return ts
}

func (ts *tokenServer) requests() int { return int(ts.count.Load()) }

func oauthConfig(apiURL, tokenURL string) *httpcall.Config {
	return &httpcall.Config{BaseURL: apiURL, Auth: httpcall.Auth{OAuth2: &httpcall.OAuth2Auth{
		TokenURL: tokenURL, ClientID: clientID, ClientSecret: clientSecret, AuthStyle: "header",
	}}}
}

// bearerAPI is an upstream that answers 401 to the tokens in refused and
// 200 to others.
func bearerAPI(t testing.TB, refused ...string) *connectortest.Upstream {
	t.Helper()
	return connectortest.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		for _, bad := range refused {
			if tok == bad || bad == "*" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":"invalid_token","token":"`+tok+`"}`)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token":"`+tok+`"}`)
	})
}

func TestOAuth2TokenRequest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		authStyle string
		wantForm  url.Values
		wantBasic bool
	}{
		{"header", "header", url.Values{
			"grant_type": {"client_credentials"}, "scope": {"invoices.write contacts.read"}, "audience": {"https://api.example.com"},
		}, true},
		{"body", "body", url.Values{
			"grant_type": {"client_credentials"}, "scope": {"invoices.write contacts.read"}, "audience": {"https://api.example.com"},
			"client_id": {clientID}, "client_secret": {clientSecret},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokenServer(t, 3600, nil)
			api := bearerAPI(t)
			cfg := oauthConfig(api.URL, tokens.URL)
			cfg.Auth.OAuth2.Scopes = []string{"invoices.write", "contacts.read"}
			cfg.Auth.OAuth2.Audience = "https://api.example.com"
			cfg.Auth.OAuth2.AuthStyle = tt.authStyle
			sys := openSystem(t, cfg)

			res, err := call(t, sys, map[string]any{"path": "/invoices", "body": map[string]any{"n": 1.0}})
			require.NoError(t, err)
			require.Equal(t, map[string]any{"token": "tok-1"}, res.Output)
			require.Equal(t, "Bearer tok-1", api.Last(t).Header.Get("Authorization"))
			require.Equal(t, "idem-1", api.Last(t).Header.Get("Idempotency-Key"))

			tokens.mu.Lock()
			defer tokens.mu.Unlock()
			require.Equal(t, tt.wantForm, tokens.forms[0])
			user, pass, ok := (&http.Request{Header: http.Header{"Authorization": {tokens.auths[0]}}}).BasicAuth()
			require.Equal(t, tt.wantBasic, ok)
			if ok {
				// RFC 6749 section 2.3.1: both are form-encoded before basic auth.
				require.Equal(t, url.QueryEscape(clientID), user)
				require.Equal(t, url.QueryEscape(clientSecret), pass)
			}
		})
	}
}

func TestOAuth2TokenCache(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		expiresIn  int
		wantTokens int
		wantLast   string
	}{
		// Cached while valid: three calls, one token request.
		{"cached", 3600, 1, "Bearer tok-1"},
		// No expiry means valid until the API refuses it.
		{"no expiry", 0, 1, "Bearer tok-1"},
		// A token expiring within the library's 10s margin is refreshed
		// before use rather than sent to expire mid-request.
		{"refreshed before expiry", 5, 3, "Bearer tok-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokenServer(t, tt.expiresIn, nil)
			api := bearerAPI(t)
			sys := openSystem(t, oauthConfig(api.URL, tokens.URL))
			for range 3 {
				_, err := call(t, sys, map[string]any{"path": "/x"})
				require.NoError(t, err)
			}
			require.Equal(t, tt.wantTokens, tokens.requests())
			require.Equal(t, 3, api.Count())
			require.Equal(t, tt.wantLast, api.Last(t).Header.Get("Authorization"))
		})
	}
}

func TestOAuth2ConcurrentCallsShareOneToken(t *testing.T) {
	t.Parallel()

	tokens := newTokenServer(t, 3600, func(w http.ResponseWriter, _ *http.Request, n int64) {
		time.Sleep(20 * time.Millisecond) // let the other callers pile up
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":3600}`, n)
	})
	api := bearerAPI(t)
	sys := openSystem(t, oauthConfig(api.URL, tokens.URL))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := call(t, sys, map[string]any{"path": "/x"})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, 1, tokens.requests())
	require.Equal(t, 20, api.Count())
}

func TestOAuth2RetryAfter401(t *testing.T) {
	t.Parallel()

	t.Run("fresh token succeeds", func(t *testing.T) {
		t.Parallel()
		tokens := newTokenServer(t, 3600, nil)
		api := bearerAPI(t, "tok-1") // tok-1 was revoked before its expiry
		sys := openSystem(t, oauthConfig(api.URL, tokens.URL))

		res, err := call(t, sys, map[string]any{"path": "/invoices", "body": map[string]any{"n": 1.0}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, map[string]any{"token": "tok-2"}, res.Output)
		require.Equal(t, 2, tokens.requests())
		require.Equal(t, 2, api.Count())
		reqs := api.Requests()
		first, second := reqs[0], reqs[1]
		require.Equal(t, "Bearer tok-1", first.Header.Get("Authorization"))
		require.Equal(t, "Bearer tok-2", second.Header.Get("Authorization"))
		require.Equal(t, first.Body, second.Body, "the retry resends the body")
		require.Equal(t, "idem-1", second.Header.Get("Idempotency-Key"))

		// The fresh token is cached for the next call.
		_, err = call(t, sys, map[string]any{"path": "/x"})
		require.NoError(t, err)
		require.Equal(t, 2, tokens.requests())
		require.Equal(t, "Bearer tok-2", api.Last(t).Header.Get("Authorization"))
	})

	t.Run("second 401 is permanent", func(t *testing.T) {
		t.Parallel()
		tokens := newTokenServer(t, 3600, nil)
		api := bearerAPI(t, "*")
		sys := openSystem(t, oauthConfig(api.URL, tokens.URL))

		res, err := call(t, sys, map[string]any{"path": "/x"})
		require.True(t, connector.IsPermanent(err), "want permanent, got %v", err)
		require.Equal(t, http.StatusUnauthorized, res.Status)
		require.Equal(t, 2, tokens.requests(), "one refresh, not a loop")
		require.Equal(t, 2, api.Count(), "one retry, not a loop")
		require.ErrorContains(t, err, "GET /x: 401 Unauthorized")
		require.NotContains(t, err.Error(), "tok-2", "the API echoed the token; the error must not")
	})

	t.Run("401 without oauth2 is not retried", func(t *testing.T) {
		t.Parallel()
		api := bearerAPI(t, "*")
		sys := openSystem(t, &httpcall.Config{BaseURL: api.URL, Auth: httpcall.Auth{Bearer: token}})
		_, err := call(t, sys, map[string]any{"path": "/x"})
		require.True(t, connector.IsPermanent(err))
		require.Equal(t, 1, api.Count())
	})
}

func TestOAuth2TokenEndpointErrors(t *testing.T) {
	t.Parallel()

	const (
		transient = iota
		permanent
	)
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		want       int
		wantAfter  time.Duration
		wantErr    string
		authStyle  string // default "header"
		wantTokens int    // default 1
	}{
		{name: "500", status: 500, body: "oops", want: transient, wantErr: "oauth2 token request: 500 Internal Server Error: oops"},
		{name: "503 retry-after", status: 503, header: map[string]string{"Retry-After": "7"}, want: transient, wantAfter: 7 * time.Second,
			wantErr: "oauth2 token request: 503 Service Unavailable"},
		{name: "429", status: 429, want: transient, wantErr: "oauth2 token request: 429 Too Many Requests"},
		{name: "400 invalid_client", status: 400, header: map[string]string{"Content-Type": "application/json"},
			body: `{"error":"invalid_client","error_description":"Client authentication failed"}`, want: permanent,
			wantErr: "oauth2 token request: 400 Bad Request: invalid_client (Client authentication failed); check client_id, client_secret and scopes"},
		{name: "401", status: 401, body: "unauthorized", want: permanent,
			wantErr: "oauth2 token request: 401 Unauthorized: unauthorized; check client_id"},
		{name: "400 echoing the secret", status: 400, header: map[string]string{"Content-Type": "text/html"}, authStyle: "body",
			body: "bad request: client_secret=" + url.QueryEscape(clientSecret) + " / " + clientSecret, want: permanent,
			wantErr: "oauth2 token request: 400 Bad Request: bad request: client_secret=[redacted] / [redacted]; check client_id"},
		{name: "404 wrong token_url", status: 404, want: permanent, wantErr: "oauth2 token request: 404 Not Found"},
		{name: "302 not followed", status: 302, header: map[string]string{"Location": "https://elsewhere.example/token"}, want: permanent,
			wantErr: "oauth2 token request: 302 Found"},
		{name: "200 not json", status: 200, header: map[string]string{"Content-Type": "text/html"}, body: "<html>login</html>",
			want: permanent, wantErr: "oauth2 token request: cannot parse json"},
		{name: "200 without a token", status: 200, header: map[string]string{"Content-Type": "application/json"}, body: `{"token_type":"Bearer"}`,
			want: permanent, wantErr: "oauth2 token request: server response missing access_token"},
		// Auto-detection tries basic auth, then form parameters.
		{name: "auto style tries both", status: 401, want: permanent, authStyle: "auto", wantTokens: 2,
			wantErr: "oauth2 token request: 401 Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokenServer(t, 3600, func(w http.ResponseWriter, _ *http.Request, _ int64) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			api := bearerAPI(t)
			cfg := oauthConfig(api.URL, tokens.URL)
			switch tt.authStyle {
			case "auto":
				cfg.Auth.OAuth2.AuthStyle = ""
			case "body":
				cfg.Auth.OAuth2.AuthStyle = "body"
			}
			sys := openSystem(t, cfg)

			res, err := call(t, sys, map[string]any{"path": "/x"})
			require.Error(t, err)
			if tt.status >= 300 {
				// The attempt records the token endpoint's answer.
				require.Equal(t, tt.status, res.Status)
				require.NotContains(t, string(res.Body), clientSecret)
			} else {
				require.Zero(t, res.Status)
			}
			require.Zero(t, api.Count(), "no API request without a token")
			require.Equal(t, max(tt.wantTokens, 1), tokens.requests())
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), clientSecret)
			require.NotContains(t, err.Error(), url.QueryEscape(clientSecret))
			require.Equal(t, tt.want == permanent, connector.IsPermanent(err), "permanent: %v", err)
			after, ok := connector.RetryAfterOf(err)
			require.Equal(t, tt.wantAfter != 0, ok)
			require.Equal(t, tt.wantAfter, after)
		})
	}

	t.Run("network error", func(t *testing.T) {
		t.Parallel()
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		api := bearerAPI(t)
		sys := openSystem(t, oauthConfig(api.URL, dead.URL+"/token?tenant=t3nant"))
		_, err := call(t, sys, map[string]any{"path": "/x"})
		require.Error(t, err)
		require.False(t, connector.IsPermanent(err), "a network error is transient: %v", err)
		require.True(t, strings.HasPrefix(err.Error(), "oauth2 token request: "), err.Error())
		require.NotContains(t, err.Error(), clientSecret)
		require.NotContains(t, err.Error(), "t3nant", "the token URL is not echoed")
		require.Zero(t, api.Count())
	})

	t.Run("recovers after a transient failure", func(t *testing.T) {
		t.Parallel()
		tokens := newTokenServer(t, 3600, func(w http.ResponseWriter, _ *http.Request, n int64) {
			if n == 1 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"tok-ok","expires_in":3600}`)
		})
		api := bearerAPI(t)
		sys := openSystem(t, oauthConfig(api.URL, tokens.URL))
		_, err := call(t, sys, map[string]any{"path": "/x"})
		require.Error(t, err)
		require.False(t, connector.IsPermanent(err))
		_, err = call(t, sys, map[string]any{"path": "/x"})
		require.NoError(t, err)
		require.Equal(t, "Bearer tok-ok", api.Last(t).Header.Get("Authorization"))
	})
}

func TestStatusOverrides(t *testing.T) {
	t.Parallel()

	const (
		transient = iota
		permanent
	)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       int
		wantAfter  time.Duration
	}{
		{name: "423 made transient", status: 423, want: transient},
		{name: "423 honours retry-after", status: 423, retryAfter: "4", want: transient, wantAfter: 4 * time.Second},
		{name: "409 made transient", status: 409, want: transient},
		{name: "503 made permanent", status: 503, retryAfter: "4", want: permanent},
		{name: "422 listed permanent", status: 422, want: permanent},
		{name: "404 keeps default", status: 404, want: permanent},
		{name: "500 keeps default", status: 500, want: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := connectortest.NewUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
			})
			sys := openSystem(t, &httpcall.Config{
				BaseURL:           up.URL,
				PermanentStatuses: []int{503, 422},
				TransientStatuses: []int{423, 409},
			})
			res, err := call(t, sys, map[string]any{"path": "/x"})
			require.Error(t, err)
			require.Equal(t, tt.status, res.Status)
			require.Equal(t, tt.want == permanent, connector.IsPermanent(err), "permanent: %v", err)
			after, ok := connector.RetryAfterOf(err)
			require.Equal(t, tt.wantAfter != 0, ok)
			require.Equal(t, tt.wantAfter, after)
		})
	}
}

func TestOAuth2AndStatusValidation(t *testing.T) {
	t.Parallel()

	good := "https://api.example.com/v1"
	oauth := func(mod func(o *httpcall.OAuth2Auth)) *httpcall.Config {
		o := &httpcall.OAuth2Auth{TokenURL: "https://login.example.com/oauth/token", ClientID: clientID, ClientSecret: clientSecret}
		mod(o)
		return &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{OAuth2: o}}
	}
	tests := []struct {
		name    string
		cfg     *httpcall.Config
		wantErr string
	}{
		{"token_url missing", oauth(func(o *httpcall.OAuth2Auth) { o.TokenURL = "" }), "auth.oauth2.token_url: required"},
		{"token_url relative", oauth(func(o *httpcall.OAuth2Auth) { o.TokenURL = "/token" }), "auth.oauth2.token_url: must be an absolute http or https URL"},
		{"token_url credentials", oauth(func(o *httpcall.OAuth2Auth) { o.TokenURL = "https://id:pw@login.example.com/token" }),
			"auth.oauth2.token_url: must not contain credentials"},
		{"token_url fragment", oauth(func(o *httpcall.OAuth2Auth) { o.TokenURL = "https://login.example.com/token#x" }),
			"auth.oauth2.token_url: must not contain a fragment"},
		{"client_id missing", oauth(func(o *httpcall.OAuth2Auth) { o.ClientID = "" }), "auth.oauth2.client_id: required"},
		{"client_secret missing", oauth(func(o *httpcall.OAuth2Auth) { o.ClientSecret = "" }), "auth.oauth2.client_secret: required"},
		{"scope with space", oauth(func(o *httpcall.OAuth2Auth) { o.Scopes = []string{"a b"} }), `auth.oauth2.scopes[0]: "a b" is not a valid scope`},
		{"empty scope", oauth(func(o *httpcall.OAuth2Auth) { o.Scopes = []string{"a", ""} }), `auth.oauth2.scopes[1]: "" is not a valid scope`},
		{"auth_style", oauth(func(o *httpcall.OAuth2Auth) { o.AuthStyle = "query" }), `auth.oauth2.auth_style: "query" is not header or body`},
		{"oauth2 and bearer", &httpcall.Config{BaseURL: good, Auth: httpcall.Auth{Bearer: token,
			OAuth2: &httpcall.OAuth2Auth{TokenURL: "https://x/t", ClientID: "c", ClientSecret: "s"}}},
			"auth: set at most one of bearer, basic, api_key and oauth2"},
		{"status too low", &httpcall.Config{BaseURL: good, PermanentStatuses: []int{99}}, "permanent_statuses[0]: 99 is not an HTTP status (100-599)"},
		{"status too high", &httpcall.Config{BaseURL: good, TransientStatuses: []int{423, 600}}, "transient_statuses[1]: 600 is not an HTTP status (100-599)"},
		{"success status", &httpcall.Config{BaseURL: good, PermanentStatuses: []int{204}}, "permanent_statuses[0]: 204 is a success and cannot be reclassified"},
		{"overlap", &httpcall.Config{BaseURL: good, PermanentStatuses: []int{409, 422}, TransientStatuses: []int{423, 409}},
			"transient_statuses[1]: 409 is also in permanent_statuses"},
		{"duplicate", &httpcall.Config{BaseURL: good, TransientStatuses: []int{423, 423}}, "transient_statuses[1]: 423 is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := httpKind(t).Open(connector.OpenParams{Name: "books", Config: tt.cfg})
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), clientSecret)
			require.NotContains(t, err.Error(), token)
		})
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		cfg := oauth(func(o *httpcall.OAuth2Auth) {
			o.Scopes = []string{"invoices.write"}
			o.Audience = "https://api.example.com"
		})
		cfg.PermanentStatuses, cfg.TransientStatuses = []int{409, 422}, []int{423}
		_, err := httpKind(t).Open(connector.OpenParams{Name: "books", Config: cfg})
		require.NoError(t, err)
	})
}
