package email_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-dev/switchboard/internal/connector/connectortest"
	"github.com/switchboard-dev/switchboard/internal/connector/email"
)

func TestDocsExample(t *testing.T) {
	t.Parallel()
	p := connectortest.CompileDocExample(t, "email", email.Register, map[string]string{
		"SMTP_USER": smtpUser, "SMTP_PASSWORD": smtpPassword, "SENDGRID_API_KEY": apiKey, "FORM_SECRET": "s",
	})
	require.Equal(t, "email", p.Systems["mail"].Kind)
	require.Equal(t, "email", p.Systems["bulk_mail"].Kind)
}
