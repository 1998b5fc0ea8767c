package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// exampleEnv gives a value to every ${NAME} an example refers to. Names
// whose values are checked for shape get a valid one; the rest get a
// recognisable dummy, so the test can check that none is printed.
func exampleEnv(t testing.TB, file []byte) map[string]string {
	t.Helper()
	shaped := map[string]string{
		"TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
		"SLACK_WEBHOOK_URL":  "https://hooks.slack.com/services/T000/B000/dummy-slack-path",
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllSubmatch(file, -1) {
		name := string(m[1])
		switch v, ok := shaped[name]; {
		case ok:
			env[name] = v
		case strings.HasSuffix(name, "_URL"):
			env[name] = "http://127.0.0.1:1/dummy-" + strings.ToLower(name)
		default:
			env[name] = "dummy-" + strings.ToLower(name)
		}
	}
	return env
}

// TestExamples runs `switchboard check` on every examples/*.yaml: the
// configs the docs point newcomers to must load, compile and warn of
// nothing, and check must not print the secrets they reference.
func TestExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			require.NoError(t, err)
			env := exampleEnv(t, src)
			code, out, errOut := run(t, env, "check", "--config", path)
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, ": ok\n")
			require.NotContains(t, out, "warnings (")
			for name, v := range env {
				if strings.HasPrefix(v, "dummy-") && (strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN") || strings.Contains(name, "PASSWORD")) {
					require.NotContains(t, out+errOut, v, "%s is printed", name)
				}
			}
		})
	}
}

// TestSeedFlows checks what the seed flows in docs/connectors.md promise.
func TestSeedFlows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file  string
		lines []string
	}{
		{"lead-capture-hubspot.yaml", []string{
			`lead_email       on web_form when (.phone // "") == "": contact (crm.upsert_contact) → owner (crm.assign_owner) → ack (mail.send)`,
			`lead_sms         on web_form when (.phone // "") != "": contact (crm.upsert_contact) → owner (crm.assign_owner) → ack (sms.send_sms)`,
			"web_form         POST /hooks/web_form  verify hmac-sha256, key: .submission_id",
		}},
		{"job-sync-polling.yaml", []string{
			"job_backstop     poll field GET /jobs every 15m0s, key: .id@.updated_at, backstop for job_events",
			"job_events       POST /hooks/job_events  verify hmac-sha256, key: .id@.updated_at",
			`nightly          schedule cron "0 2 * * *" in America/Chicago`,
			"poll_failing     every timed source",
		}},
		{"job-status.yaml", []string{
			`job_completed    on field_app when .status == "completed": deal (crm.move_deal_stage) → notify (sms.send_sms) → invoice (accounting.request)`,
			`job_scheduled    on field_app when .status == "scheduled": dispatch (chat.post_webhook)`,
			"accounting       kind http",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("../../examples", tt.file)
			src, err := os.ReadFile(path)
			require.NoError(t, err)
			code, out, errOut := run(t, exampleEnv(t, src), "check", "--config", path)
			require.Equal(t, 0, code, errOut)
			for _, line := range tt.lines {
				require.Contains(t, out, line)
			}
		})
	}
}
