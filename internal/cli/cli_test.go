package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/cli"
)

func run(t testing.TB, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := cli.Main(t.Context(), args, &stdout, &stderr, getenv)
	return code, stdout.String(), stderr.String()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	env := map[string]string{"CRM_URL": "http://127.0.0.1:1", "SMS_URL": "http://127.0.0.1:2", "FORM_SECRET": "s3cret-value",
		"CRM_TOKEN": "tok-crm-123", "SMS_TOKEN": "tok-sms-456"}
	code, out, errOut := run(t, env, "check", "--config", "../../examples/lead-capture.yaml")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "lead_capture")
	require.Contains(t, out, "POST /hooks/web_form")
	require.Contains(t, out, "contact (crm.request) → ack (sms.request)")
	for _, secret := range []string{"s3cret-value", "tok-crm-123", "tok-sms-456"} {
		require.NotContains(t, out+errOut, secret)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("version: 1\nsources:\n  s:\n    webhook: {}\nflows:\n  f:\n    on: nope\n    steps:\n      - { id: a, do: x.y }\n"), 0o600))
	code, _, errOut = run(t, env, "check", "--config", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, bad+":7:9: flows.f.on: unknown source \"nope\"")
	require.Contains(t, errOut, bad+":9:22: flows.f.steps[0].do: unknown system \"x\"")

	traced := filepath.Join(t.TempDir(), "traced.yaml")
	require.NoError(t, os.WriteFile(traced, []byte("version: 1\nsources:\n  s:\n    webhook: {}\n"+
		"tracing: { otlp_endpoint: 'http://user:${FORM_SECRET}@collector:4318', sample_ratio: 0.5, headers: { x-key: '${CRM_TOKEN}' } }\n"), 0o600))
	code, out, errOut = run(t, env, "check", "--config", traced)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "tracing: OTLP/HTTP to http://user:xxxxx@collector:4318, recording 0.5 of new traces")
	require.NotContains(t, out, "s3cret-value")
	require.NotContains(t, out, "tok-crm-123")

	code, _, errOut = run(t, env, "check", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no such file")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	code, _, errOut := run(t, nil)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "serve")
	code, _, errOut = run(t, nil, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
	code, _, _ = run(t, nil, "events", "show")
	require.Equal(t, 2, code, "missing EVENT_ID is a usage error")
	code, _, errOut = run(t, nil, "events", "list", "--state", "lost")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "want pending, running, retrying, succeeded or dead")
	// The bench's in-process measurements cannot be asked of separate
	// processes: refused before anything runs, named once.
	code, _, errOut = run(t, nil, "bench", "--ceilings", "--separate-processes")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "switchboard bench: --ceilings runs its servers in the bench process")
	code, out, _ := run(t, nil, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "switchboard "))
}

// TestDemo runs the demo end to end and checks that it shows each outcome
// the README promises, then inspects its store with the operator commands.
func TestDemo(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("demo takes a few seconds")
	}
	dir := t.TempDir()
	code, out, errOut := run(t, nil, "demo", "--addr", "127.0.0.1:0", "--dir", dir, "--exit")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"RECEIVED   ann@example.com",
		"DELIVERED  ann@example.com    lead_capture/ack",
		"DUPLICATE  ann@example.com",
		"RETRYING   bob@example.com",
		"DELIVERED  bob@example.com    lead_capture/contact → crm, HTTP 200 (attempt 3)",
		"next in 2s", // the SMS provider's Retry-After: 2
		"DELIVERED  cara@example.com   lead_capture/ack → sms, HTTP 200 (attempt 2)",
		"DEAD       not-an-email",
	} {
		require.Contains(t, out, want)
	}

	env := map[string]string{"CRM_URL": "http://127.0.0.1:1", "SMS_URL": "http://127.0.0.1:2", "FORM_SECRET": "x"}
	cfg := filepath.Join(dir, "demo.yaml")
	code, out, errOut = run(t, env, "dlq", "list", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	fields := strings.Fields(lines[1])
	runID, eventID := fields[0], fields[1]
	require.Contains(t, lines[1], "web_form  lead_capture  contact")
	require.Contains(t, lines[1], "400 Bad Request")

	code, out, _ = run(t, env, "events", "list", "--config", cfg)
	require.Equal(t, 0, code)
	require.Equal(t, 3, strings.Count(out, "lead_capture:succeeded"), out)
	require.Equal(t, 1, strings.Count(out, "lead_capture:dead"), out)
	code, out, _ = run(t, env, "events", "list", "--state", "dead", "--config", cfg)
	require.Equal(t, 0, code)
	require.Equal(t, 2, strings.Count(out, "\n"), "a header and the one dead event: "+out)
	require.Contains(t, out, eventID)

	code, out, _ = run(t, env, "events", "show", eventID, "--config", cfg)
	require.Equal(t, 0, code)
	require.Contains(t, out, "HTTP 400")

	code, out, errOut = run(t, env, "retry", runID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "queued again at step contact")
	code, _, errOut = run(t, env, "retry", runID, "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "only dead runs can be retried")

	code, out, errOut = run(t, env, "replay", eventID, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "generation 1")
}
