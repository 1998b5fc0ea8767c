package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/config"
)

// tokenValue is the value of $TOKEN in these tests. No error may quote it.
const tokenValue = "tok-Sup3rSecret-VALUE"

// getenv resolves $TOKEN and $URL; every other variable is unset.
func getenv(name string) (string, bool) {
	switch name {
	case "TOKEN":
		return tokenValue, true
	case "URL":
		return "http://127.0.0.1:9001", true
	}
	return "", false
}

// parseErrors parses src as c.yaml and returns each reported error's text.
// It fails the test if src parses.
func parseErrors(tb testing.TB, src string) []string {
	tb.Helper()
	c, err := config.Parse("c.yaml", []byte(src), getenv)
	require.Error(tb, err)
	require.Nil(tb, c)
	var lines []string
	for _, e := range unjoin(err) {
		var ce *config.Error
		require.ErrorAs(tb, e, &ce, "every reported error is a *config.Error")
		require.Equal(tb, "c.yaml", ce.File)
		lines = append(lines, e.Error())
	}
	return lines
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "unknown top-level key lists the allowed keys",
			src:  "version: 1\nworker: 4\n",
			want: []string{`c.yaml:2:1: worker: unknown key (allowed: alerts, entities, flows, lease, loops, retention, retry, shutdown_grace, sources, store, systems, tracing, version, workers)`},
		},
		{
			name: "unknown nested key",
			src:  "version: 1\nsources:\n  form:\n    webhook:\n      max_bytes: 1KiB\n",
			want: []string{`c.yaml:5:7: sources.form.webhook.max_bytes: unknown key (allowed: format, max_body, verify)`},
		},
		{
			name: "unknown key in a step",
			src:  "version: 1\nflows:\n  f:\n    steps:\n      - id: a\n        run: x\n",
			want: []string{`c.yaml:6:9: flows.f.steps[0].run: unknown key (allowed: do, fields, id, record_id, retry, with, writes)`},
		},
		{
			name: "string where an integer belongs",
			src:  "version: 1\nworkers: many\n",
			want: []string{`c.yaml:2:10: workers: want an integer, got "many"`},
		},
		{
			name: "float where an integer belongs",
			src:  "version: 1\nretry: {attempts: 2.5}\n",
			want: []string{`c.yaml:2:19: retry.attempts: want an integer, got "2.5"`},
		},
		{
			name: "mapping where a string belongs",
			src:  "version: 1\nstore: {path: x.db}\n",
			want: []string{`c.yaml:2:8: store: want a string, got a mapping`},
		},
		{
			name: "list where a mapping belongs",
			src:  "version: 1\nsources: [a, b]\n",
			want: []string{`c.yaml:2:10: sources: want a mapping, got a list`},
		},
		{
			name: "mapping where a list belongs",
			src:  "version: 1\nflows:\n  f:\n    steps: {id: a}\n",
			want: []string{`c.yaml:4:12: flows.f.steps: want a list, got a mapping`},
		},
		{
			name: "bad duration",
			src:  "version: 1\nlease: 30\n",
			want: []string{`c.yaml:2:8: lease: want a duration such as 30s, 5m or 30d, got "30"`},
		},
		{
			name: "bad byte size",
			src:  "version: 1\nsources:\n  s:\n    webhook: {max_body: lots}\n",
			want: []string{`c.yaml:4:25: sources.s.webhook.max_body: want a size such as 1048576 or 1MiB, got "lots"`},
		},
		{
			name: "unset environment variable",
			src:  "version: 1\nstore: sqlite:${DATA_DIR}/s.db\n",
			want: []string{`c.yaml:2:8: store: environment variable DATA_DIR is not set`},
		},
		{
			name: "every unset variable of one value is reported",
			src:  "version: 1\nstore: ${A}${B}\n",
			want: []string{
				`c.yaml:2:8: store: environment variable A is not set`,
				`c.yaml:2:8: store: environment variable B is not set`,
			},
		},
		{
			name: "duplicate top-level key",
			src:  "version: 1\nworkers: 2\nworkers: 3\n",
			want: []string{`c.yaml:3:1: key "workers" appears twice`},
		},
		{
			name: "duplicate map key",
			src:  "version: 1\nsources:\n  s: {webhook: {}}\n  s: {webhook: {}}\n",
			want: []string{`c.yaml:4:3: sources: key "s" appears twice`},
		},
		{
			name: "every problem is reported at once",
			src:  "version: 1\nworkers: x\nlease: y\nbogus: z\n",
			want: []string{
				`c.yaml:2:10: workers: want an integer, got "x"`,
				`c.yaml:3:8: lease: want a duration such as 30s, 5m or 30d, got "y"`,
				`c.yaml:4:1: bogus: unknown key (allowed: alerts, entities, flows, lease, loops, retention, retry, shutdown_grace, sources, store, systems, tracing, version, workers)`,
			},
		},
		{
			name: "unsupported version",
			src:  "version: 2\n",
			want: []string{`c.yaml:1:10: version: unsupported version 2 (want 1)`},
		},
		{
			name: "missing version",
			src:  "workers: 2\n",
			want: []string{`c.yaml:1:1: version: unsupported version 0 (want 1)`},
		},
		{
			name: "empty file",
			src:  "",
			want: []string{`c.yaml: the file is empty`},
		},
		{
			name: "file of comments only",
			src:  "# nothing here yet\n",
			want: []string{`c.yaml: the file is empty`},
		},
		{
			name: "yaml syntax error without a fake column",
			src:  "version: 1\nsources:\n  s: [\n",
			want: []string{`c.yaml:3: did not find expected node content`},
		},
		{
			name: "a second document is not dropped unseen",
			src:  "version: 1\nsources:\n  s: {webhook: {}}\n---\nflows:\n  f: {on: s}\n",
			want: []string{`c.yaml:5:1: a second YAML document (after ---): a config is one document; merge it into the first`},
		},
		{
			name: "a syntax error in a second document",
			src:  "version: 1\n---\nflows: [\n",
			want: []string{`c.yaml:3: did not find expected node content`},
		},
		{
			name: "wrong type never quotes an environment variable's value",
			src:  "version: 1\nworkers: ${TOKEN}\n",
			want: []string{`c.yaml:2:10: workers: want an integer, got "${TOKEN}"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, parseErrors(t, tt.src))
		})
	}
}

func TestParseYAMLSyntaxErrorLine(t *testing.T) {
	t.Parallel()

	_, err := config.Parse("c.yaml", []byte("version: 1\nworkers: 2\n  lease: 3s\n"), getenv)
	var ce *config.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 3, ce.Line)
	require.True(t, strings.HasPrefix(err.Error(), "c.yaml:3:"), "error %q does not start with c.yaml:3:", err)
}

func TestParseUnsupportedVersion(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		src  string
		want string
	}{
		{name: "version 2", src: "version: 2\n", want: "version: unsupported version 2 (want 1)"},
		{name: "no version", src: "workers: 2\n", want: "version: unsupported version 0 (want 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("c.yaml", []byte(tt.src), getenv)
			var ce *config.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, "version", ce.Path)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseNeverQuotesEnvironmentValues(t *testing.T) {
	t.Parallel()

	// $TOKEN is set and used as a secret; everything else is wrong, so the
	// config produces as many errors as the decoder can find.
	src := `version: 1
store: sqlite:${DATA_DIR}/s.db
workers: ${URL}
lease: forever
retry: {attempts: [1], cap: "${TOKEN_TYPO}"}
sources:
  form:
    webhook:
      verify: {scheme: hmac-sha256, header: X-Signature, secret: "${TOKEN}", colour: red}
      max_body: ${URL}
    key: ${TOKEN}${MISSING}
`
	c, err := config.Parse("c.yaml", []byte(src), getenv)
	require.Error(t, err)
	require.Nil(t, c)
	require.Len(t, unjoin(err), 8)
	require.NotContains(t, err.Error(), tokenValue)
	require.ErrorContains(t, err, "environment variable DATA_DIR is not set")
	require.ErrorContains(t, err, "environment variable TOKEN_TYPO is not set")
	require.ErrorContains(t, err, "environment variable MISSING is not set")
}

func TestParseEnvironment(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		value string
		want  string
	}{
		{name: "variable", value: "sqlite:${TOKEN}.db", want: "sqlite:" + tokenValue + ".db"},
		{name: "two variables", value: "${URL}/${TOKEN}", want: "http://127.0.0.1:9001/" + tokenValue},
		{name: "double dollar is a literal dollar", value: "sqlite:a$$b.db", want: "sqlite:a$b.db"},
		{name: "escaped reference is not looked up", value: "sqlite:$${UNSET}.db", want: "sqlite:${UNSET}.db"},
		{name: "lone dollar is kept", value: "sqlite:$HOME/a.db", want: "sqlite:$HOME/a.db"},
		{name: "no braces, no expansion", value: "sqlite:$TOKEN.db", want: "sqlite:$TOKEN.db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Parse("c.yaml", []byte("version: 1\nsources:\n  s: {entity: '"+tt.value+"'}\n"), getenv)
			require.NoError(t, err)
			require.Equal(t, tt.want, c.Sources["s"].Entity)
		})
	}
}

func TestParseSecretIsRedacted(t *testing.T) {
	t.Parallel()

	src := "version: 1\nsources:\n  s:\n    webhook:\n      verify: {scheme: hmac-sha256, header: X-Sig, secret: '${TOKEN}'}\n"
	c, err := config.Parse("c.yaml", []byte(src), getenv)
	require.NoError(t, err)
	s := c.Sources["s"].Webhook.Verify.Secret
	require.Equal(t, tokenValue, s.Reveal())
	require.Equal(t, "[redacted]", s.String())
}

func TestParseExample(t *testing.T) {
	t.Parallel()

	env := map[string]string{
		"CRM_URL": "http://127.0.0.1:9001", "SMS_URL": "http://127.0.0.1:9002",
		"FORM_SECRET": "s3cret", "CRM_TOKEN": "t0ken", "SMS_TOKEN": "t0ken",
	}
	path := filepath.Join("..", "..", "examples", "lead-capture.yaml")
	c, err := config.Load(path, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err)
	require.Equal(t, 1, c.Version)
	require.Equal(t, 16, c.Workers)
	require.Equal(t, filepath.Join("..", "..", "examples", "switchboard.db"), c.StorePath())
	require.Equal(t, config.ByteSize(64<<10), c.Sources["web_form"].Webhook.MaxBody)
	require.Equal(t, "s3cret", c.Sources["web_form"].Webhook.Verify.Secret.Reveal())
	require.Equal(t, ".submission_id", c.Sources["web_form"].Key)
	require.Equal(t, ".email != null", c.Flows["lead_capture"].When)
	require.Len(t, c.Flows["lead_capture"].Steps, 2)
	require.ElementsMatch(t, []string{"crm", "sms"}, keys(c.Systems))
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()

	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), getenv)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestParseRetryAndDurations(t *testing.T) {
	t.Parallel()

	src := `version: 1
lease: 1m
retry: {attempts: 3, base: 250ms, cap: 1h}
flows:
  f:
    retry: {attempts: 5}
    steps:
      - id: a
        do: crm.request
        retry: {cap: 30s}
`
	c, err := config.Parse("c.yaml", []byte(src), getenv)
	require.NoError(t, err)
	require.Equal(t, time.Minute, c.Lease)
	require.Equal(t, config.Retry{Attempts: 3, Base: 250 * time.Millisecond, Cap: time.Hour}, c.Retry)
	require.Equal(t, config.Retry{Attempts: 5}, c.Flows["f"].Retry)
	require.Equal(t, config.Retry{Cap: 30 * time.Second}, c.Flows["f"].Steps[0].Retry)
}

func TestStorePath(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		file  string
		store string
		want  string
	}{
		{name: "default beside the config", file: "conf/s.yaml", store: "", want: filepath.Join("conf", "switchboard.db")},
		{name: "relative to the config", file: "conf/s.yaml", store: "sqlite:data/x.db", want: filepath.Join("conf", "data", "x.db")},
		{name: "absolute", file: "conf/s.yaml", store: "sqlite:/var/lib/x.db", want: "/var/lib/x.db"},
		{name: "from the environment", file: "s.yaml", store: "sqlite:/data/${TOKEN}.db", want: "/data/" + tokenValue + ".db"},
		{name: "not sqlite", file: "conf/s.yaml", store: "postgres://db/x", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Parse(tt.file, []byte("version: 1\nstore: '"+tt.store+"'\n"), getenv)
			require.NoError(t, err)
			require.Equal(t, tt.want, c.StorePath())
		})
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      string
		want    config.ByteSize
		wantErr bool
	}{
		{name: "plain bytes", in: "512", want: 512},
		{name: "zero", in: "0", want: 0},
		{name: "bytes suffix", in: "100B", want: 100},
		{name: "KiB", in: "64KiB", want: 64 << 10},
		{name: "MiB", in: "1MiB", want: 1 << 20},
		{name: "GiB", in: "2GiB", want: 2 << 30},
		{name: "KB", in: "64KB", want: 64_000},
		{name: "MB", in: "10MB", want: 10_000_000},
		{name: "GB", in: "1GB", want: 1_000_000_000},
		{name: "spaces around and before the unit", in: " 2 MiB ", want: 2 << 20},
		{name: "empty", in: "", wantErr: true},
		{name: "unit only", in: "MiB", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "fraction", in: "1.5MiB", wantErr: true},
		{name: "lowercase unit", in: "1mib", wantErr: true},
		{name: "unknown unit", in: "1TiB", wantErr: true},
		{name: "words", in: "lots", wantErr: true},
		{name: "too large for int64", in: "99999999999999999999", wantErr: true},
		{name: "overflow through the unit", in: "8589934592GiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.ParseByteSize(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				require.ErrorContains(t, err, "want a size such as 1048576 or 1MiB")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		err  *config.Error
		want string
	}{
		{name: "full", err: &config.Error{File: "c.yaml", Line: 3, Col: 5, Path: "flows.f.on", Msg: "required"}, want: "c.yaml:3:5: flows.f.on: required"},
		{name: "no path", err: &config.Error{File: "c.yaml", Line: 1, Col: 1, Msg: "bad"}, want: "c.yaml:1:1: bad"},
		{name: "no position", err: &config.Error{File: "c.yaml", Msg: "the file is empty"}, want: "c.yaml: the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile(filepath.Join("..", "..", "examples", "lead-capture.yaml")); err == nil {
		f.Add(example)
	}
	f.Add([]byte(""))
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("version: 1\nstore: ${TOKEN}$$${UNSET}\nworkers: ${URL}\n"))
	f.Add([]byte("version: 1\nsources:\n  s: &a {webhook: {max_body: 1MiB}, key: .id}\n  t: *a\n"))
	f.Add([]byte("version: 1\nflows:\n  f:\n    on: s\n    steps: [{id: a, do: x.y, with: {a: [1, {b: .c}]}}]\n"))
	f.Add([]byte("version: 1\nworkers: 2\nworkers: 3\nsources: [1]\nflows: {f: {steps: {}}}\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("a: [\n"))
	f.Add([]byte("--- 1\n--- 2\n"))
	f.Add([]byte("version: !!binary aGVsbG8=\nlease: 9223372036854775807h\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse("fuzz.yaml", data, getenv)
		if err != nil {
			require.Nil(t, c)
			for _, e := range unjoin(err) {
				var ce *config.Error
				require.ErrorAs(t, e, &ce)
			}
			return
		}
		require.Equal(t, 1, c.Version)
	})
}

// TestParseTrailingDocumentMarker accepts a config that ends with "---" or
// "...": an empty document after it holds nothing to drop.
func TestParseTrailingDocumentMarker(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"version: 1\n---\n", "---\nversion: 1\n...\n", "version: 1\n---\n# nothing\n"} {
		c, err := config.Parse("c.yaml", []byte(src), getenv)
		require.NoError(t, err, src)
		require.Equal(t, 1, c.Version)
	}
}
