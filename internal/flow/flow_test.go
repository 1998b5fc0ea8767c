package flow_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/connector/all"
	"github.com/switchboard-dev/switchboard/internal/flow"
	"github.com/switchboard-dev/switchboard/internal/transform"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testEnv is the environment the test configs see. The secret values must
// never appear in an error.
var testEnv = map[string]string{
	"CRM_URL":     "http://127.0.0.1:9001",
	"SMS_URL":     "http://127.0.0.1:9002",
	"CRM_TOKEN":   "crm-T0ken-never-printed",
	"SMS_TOKEN":   "sms-T0ken-never-printed",
	"FORM_SECRET": "form-s3cret-never-printed",
}

func getenv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// compile parses src as file and compiles it with every built-in kind.
func compile(tb testing.TB, file, src string) (*flow.Plan, error) {
	tb.Helper()
	c, err := config.Parse(file, []byte(src), getenv)
	require.NoError(tb, err, "the config must decode; only the compiler should object")
	return flow.Compile(c, all.Registry())
}

// mustCompile compiles src and fails the test on any error.
func mustCompile(tb testing.TB, file, src string) *flow.Plan {
	tb.Helper()
	p, err := compile(tb, file, src)
	require.NoError(tb, err)
	return p
}

// TestCompileErrorsGolden compiles configs full of mistakes and compares
// every reported error, one per line, with testdata/NAME.golden.
// Regenerate with: go test ./internal/flow -update
func TestCompileErrorsGolden(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"testdata/errors.yaml", "testdata/poll_errors.yaml"} {
		t.Run(file, func(t *testing.T) { compileErrorsGolden(t, file) })
	}
}

func compileErrorsGolden(t *testing.T, file string) {
	positioned := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+:\d+: \S`)
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	_, err = compile(t, file, string(data))
	require.Error(t, err)

	var lines []string
	for _, e := range unjoin(err) {
		var ce *config.Error
		require.ErrorAs(t, e, &ce)
		line := e.Error()
		require.Regexp(t, positioned, line, "every error names file:line:col")
		require.NotContains(t, line, "\n", "one error, one line")
		for name, secret := range testEnv {
			if strings.Contains(name, "TOKEN") || strings.Contains(name, "SECRET") {
				require.NotContains(t, line, secret)
			}
		}
		lines = append(lines, line)
	}
	got := strings.Join(lines, "\n") + "\n"

	golden := strings.TrimSuffix(file, ".yaml") + ".golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/flow -update to create it")
	require.Equal(t, string(want), got)
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()

	const head = "version: 1\nsystems:\n  crm: {kind: http, base_url: 'http://127.0.0.1:9'}\nsources:\n  s: {webhook: {}}\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "a constant input of the wrong type",
			src: head + "flows:\n  f:\n    on: s\n    steps:\n      - id: a\n        do: crm.request\n        with:\n" +
				"          path: '42'\n          headers: '\"x\"'\n          method: .method\n          body: '[1]'\n",
			want: []string{
				`c.yaml:13:17: flows.f.steps[0].with.path: input of http.request wants a string, got the number 42 (a jq string literal is written '"text"')`,
				`c.yaml:14:20: flows.f.steps[0].with.headers: input of http.request wants an object, got the string "x" (a jq string literal is written '"text"')`,
			},
		},
		{
			name: "negative periods",
			src:  strings.Replace(head, "version: 1\n", "version: 1\nlease: -5s\nretry: {cap: -1m}\n", 1) + "flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request}]\n",
			want: []string{
				`c.yaml:2:8: lease: must not be negative`,
				`c.yaml:3:14: retry.cap: must not be negative`,
			},
		},
		{
			name: "a lease too short to renew",
			src:  strings.Replace(head, "version: 1\n", "version: 1\nlease: 30ms\n", 1) + "flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request}]\n",
			want: []string{
				`c.yaml:2:8: lease: must be at least 1s (it is renewed every third of it; a claim that lapses mid-call is sent again by another worker)`,
			},
		},
		{
			name: "unknown source in on",
			src:  head + "flows:\n  f:\n    on: t\n    steps: [{id: a, do: crm.request}]\n",
			want: []string{`c.yaml:8:9: flows.f.on: unknown source "t" (defined: s)`},
		},
		{
			name: "unknown system when none are defined",
			src:  "version: 1\nsources:\n  s: {webhook: {}}\nflows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request}]\n",
			want: []string{`c.yaml:7:25: flows.f.steps[0].do: unknown system "crm" in "crm.request" (none are defined)`},
		},
		{
			name: "do without an action",
			src:  head + "flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm}]\n",
			want: []string{`c.yaml:9:25: flows.f.steps[0].do: unknown action "crm" (http systems offer: crm.request)`},
		},
		{
			name: "jq error in a nested list of with",
			src:  head + "flows:\n  f:\n    on: s\n    steps:\n      - id: a\n        do: crm.request\n        with:\n          body:\n            - '.a'\n            - '.b['\n",
			want: []string{`c.yaml:15:15: flows.f.steps[0].with.body[1]: jq syntax error in ".b[": unexpected EOF`},
		},
		{
			name: "step ids may reuse only across flows",
			src:  head + "flows:\n  f:\n    on: s\n    steps: [{id: a, do: crm.request}]\n  g:\n    on: s\n    steps: [{id: a, do: crm.request}, {id: a, do: crm.request}]\n",
			want: []string{`c.yaml:12:44: flows.g.steps[1].id: duplicate step id "a"`},
		},
		{
			name: "missing secret of standard-webhooks",
			src:  "version: 1\nsources:\n  s:\n    webhook:\n      verify: {scheme: standard-webhooks}\n",
			want: []string{`c.yaml:5:15: sources.s.webhook.verify.secret: required`},
		},
		{
			name: "a system's own errors each get a line and a position",
			src:  "version: 1\nsystems:\n  crm:\n    kind: http\n    base_url: ftp://x\n    headers: {'bad name': x}\n",
			want: []string{
				`c.yaml:5:15: systems.crm.base_url: must be an absolute http or https URL`,
				`c.yaml:6:14: systems.crm.headers: "bad name" is not a valid header name`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := compile(t, "c.yaml", tt.src)
			require.Error(t, err)
			require.Nil(t, p)
			var got []string
			for _, e := range unjoin(err) {
				got = append(got, e.Error())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// policy is shorthand for a RetryPolicy.
func policy(attempts int, base, limit time.Duration) flow.RetryPolicy {
	return flow.RetryPolicy{Attempts: attempts, Base: base, Cap: limit}
}

func flowNames(fs []*flow.Flow) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestCompile(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		file  string
		src   string
		check func(t testing.TB, p *flow.Plan)
	}{
		{
			name: "defaults",
			file: "conf/c.yaml",
			src: `version: 1
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  s:
    webhook: {}
flows:
  f:
    on: s
    steps:
      - id: a
        do: crm.request
`,
			check: func(t testing.TB, p *flow.Plan) {
				require.Equal(t, 16, p.Workers)
				require.Equal(t, 30*time.Second, p.Lease)
				require.Equal(t, filepath.Join("conf", "switchboard.db"), p.StorePath)
				wh := p.Sources["s"].Webhook
				require.Equal(t, int64(1<<20), wh.MaxBody)
				require.False(t, wh.Form)
				require.Nil(t, wh.Verifier)
				require.Empty(t, wh.Scheme)
				require.Nil(t, p.Sources["s"].Key)
				st := p.Flows["f"].Steps[0]
				require.Equal(t, policy(8, time.Second, 10*time.Minute), st.Retry)
				require.Equal(t, "a", st.ID)
				require.Equal(t, "crm", st.System)
				require.Equal(t, "request", st.Action)
				require.NotNil(t, st.Call)
				require.Nil(t, st.Input)
				require.Nil(t, p.Flows["f"].When)
				require.Equal(t, "http", p.Systems["crm"].Kind)
				require.Equal(t, []string{
					"conf/c.yaml:6:14: sources.s: webhook has no verify: anyone who knows the URL can post events",
				}, p.Warnings)
			},
		},
		{
			name: "explicit settings",
			file: "c.yaml",
			src: `version: 1
store: sqlite:/var/lib/switchboard/s.db
workers: 4
lease: 2m
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  s:
    webhook: {max_body: 64KiB, format: form}
flows:
  f:
    on: s
    steps: [{id: a, do: crm.request}]
`,
			check: func(t testing.TB, p *flow.Plan) {
				require.Equal(t, 4, p.Workers)
				require.Equal(t, 2*time.Minute, p.Lease)
				require.Equal(t, "/var/lib/switchboard/s.db", p.StorePath)
				require.Equal(t, int64(64<<10), p.Sources["s"].Webhook.MaxBody)
				require.True(t, p.Sources["s"].Webhook.Form)
			},
		},
		{
			name: "retry policy inherits config, then flow, then step",
			file: "c.yaml",
			src: `version: 1
retry: {attempts: 5}
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  s: {webhook: {}}
flows:
  plain:
    on: s
    steps: [{id: a, do: crm.request}]
  tuned:
    on: s
    retry: {base: 2s}
    steps:
      - id: inherits
        do: crm.request
      - id: overrides
        do: crm.request
        retry: {cap: 1m}
      - id: overrides_all
        do: crm.request
        retry: {attempts: 1, base: 100ms, cap: 1s}
`,
			check: func(t testing.TB, p *flow.Plan) {
				require.Equal(t, policy(5, time.Second, 10*time.Minute), p.Flows["plain"].Steps[0].Retry)
				tuned := p.Flows["tuned"].Steps
				require.Equal(t, policy(5, 2*time.Second, 10*time.Minute), tuned[0].Retry)
				require.Equal(t, policy(5, 2*time.Second, time.Minute), tuned[1].Retry)
				require.Equal(t, policy(1, 100*time.Millisecond, time.Second), tuned[2].Retry)
				for i, st := range tuned {
					require.Equal(t, i, st.Index)
				}
			},
		},
		{
			name: "sources list their flows by name, and idle sources warn",
			file: "c.yaml",
			src: `version: 1
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  busy:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Signature, secret: "${FORM_SECRET}"}
  idle:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Signature, secret: "${FORM_SECRET}"}
  open:
    webhook: {}
flows:
  zeta:
    on: busy
    steps: [{id: a, do: crm.request}]
  alpha:
    on: busy
    when: .type == "lead"
    steps: [{id: a, do: crm.request}]
  mid:
    on: open
    steps: [{id: a, do: crm.request}]
`,
			check: func(t testing.TB, p *flow.Plan) {
				require.Equal(t, []string{"alpha", "zeta"}, flowNames(p.Sources["busy"].Flows))
				require.Equal(t, []string{"mid"}, flowNames(p.Sources["open"].Flows))
				require.Empty(t, p.Sources["idle"].Flows)
				require.Equal(t, "busy", p.Flows["alpha"].Source)
				require.Equal(t, `.type == "lead"`, p.Flows["alpha"].When.String())
				require.Equal(t, []string{
					"c.yaml:9:5: sources.idle: no flow has on: idle; its events are stored and nothing runs",
					"c.yaml:12:14: sources.open: webhook has no verify: anyone who knows the URL can post events",
				}, p.Warnings)
			},
		},
		{
			name: "verification schemes and keys",
			file: "c.yaml",
			src: `version: 1
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  github:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Hub-Signature-256, prefix: "sha256=", encoding: base64, secret: "${FORM_SECRET}"}
    key: .delivery.id
  svix:
    webhook:
      verify: {scheme: standard-webhooks, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", tolerance: 1m}
flows:
  g: {on: github, steps: [{id: a, do: crm.request}]}
  s: {on: svix, steps: [{id: a, do: crm.request}]}
`,
			check: func(t testing.TB, p *flow.Plan) {
				require.Equal(t, "hmac-sha256", p.Sources["github"].Webhook.Scheme)
				require.NotNil(t, p.Sources["github"].Webhook.Verifier)
				require.Equal(t, ".delivery.id", p.Sources["github"].Key.String())
				require.Equal(t, "standard-webhooks", p.Sources["svix"].Webhook.Scheme)
				require.NotNil(t, p.Sources["svix"].Webhook.Verifier)
				require.Empty(t, p.Warnings)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, mustCompile(t, tt.file, tt.src))
		})
	}
}

func TestCompileExample(t *testing.T) {
	t.Parallel()

	c, err := config.Load(filepath.Join("..", "..", "examples", "lead-capture.yaml"), getenv)
	require.NoError(t, err)
	p, err := flow.Compile(c, all.Registry())
	require.NoError(t, err)
	require.Empty(t, p.Warnings)
	src := p.Sources["web_form"]
	require.Equal(t, int64(64<<10), src.Webhook.MaxBody)
	require.Equal(t, "hmac-sha256", src.Webhook.Scheme)
	require.Equal(t, []string{"lead_capture"}, flowNames(src.Flows))
	steps := p.Flows["lead_capture"].Steps
	require.Len(t, steps, 2)
	require.Equal(t, "contact", steps[0].ID)
	require.Equal(t, "sms", steps[1].System)
}

func TestTemplateEval(t *testing.T) {
	t.Parallel()

	p := mustCompile(t, "c.yaml", `version: 1
systems:
  crm: {kind: http, base_url: "${CRM_URL}"}
sources:
  s: {webhook: {}}
flows:
  f:
    on: s
    steps:
      - id: contact
        do: crm.request
      - id: note
        do: crm.request
        with:
          method: '"POST"'
          path: '"/contacts/\($steps.contact.id)/notes"'
          body:
            text: '"Lead from \(.first_name)"'
            event: $event.id
            owner: null
            count: 1 + 2
            id: .id
            tags:
              - .tags[0]
              - '"web"'
              - {source: $event.source, first: .tags | first}
      - id: broken
        do: crm.request
        with:
          body:
            fine: .first_name
            bad: [.tags, .first_name.nope]
`)
	payload, err := transform.Decode([]byte(`{"first_name": "Ann", "tags": ["vip", "eu"], "id": 12345678901234567890}`))
	require.NoError(t, err)
	steps := map[string]any{"contact": map[string]any{"id": "c_42"}}
	event := map[string]any{"id": "evt_1", "source": "s"}

	got, err := p.Flows["f"].Steps[1].Input.Eval(t.Context(), payload, steps, event)
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"method": "POST",
		"path":   "/contacts/c_42/notes",
		"body": map[string]any{
			"text":  "Lead from Ann",
			"event": "evt_1",
			"owner": nil,
			"count": 3,
			"id":    json.Number("12345678901234567890"),
			"tags":  []any{"vip", "web", map[string]any{"source": "s", "first": "vip"}},
		},
	}, got)

	_, err = p.Flows["f"].Steps[2].Input.Eval(t.Context(), payload, steps, event)
	require.ErrorContains(t, err, "flows.f.steps[2].with.body.bad[1]: ", "the error names the failing leaf")
}
