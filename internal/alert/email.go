package alert

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	gomail "github.com/wneessen/go-mail"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
)

const (
	// smtpTimeout bounds each network operation of one send (dial, each
	// command), as Config.Client's default timeout bounds a request.
	smtpTimeout = 10 * time.Second
	// maxSubjectLen bounds the Subject line, in bytes of summary.
	maxSubjectLen = 200
	// maxEmailErrorLen bounds the last error quoted in an e-mail body.
	maxEmailErrorLen = 4000
)

// mailer sends one email target's notifications through its SMTP server,
// one connection per message: alerts are rare, and a held connection would
// need its own health checks.
type mailer struct {
	client *gomail.Client // safe for concurrent DialAndSendWithContext
	target *rule.EmailTarget
	// redact scrubs the password from error texts: a server may echo it.
	redact *strings.Replacer
}

func newMailer(t *rule.EmailTarget) (*mailer, error) {
	opts := []gomail.Option{gomail.WithPort(t.SMTP.Port), gomail.WithTimeout(smtpTimeout)}
	switch t.SMTP.Security {
	case rule.ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case rule.Plaintext:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if t.SMTP.Username != "" {
		// Over TLS, go-mail picks the strongest mechanism the server
		// offers. Without TLS it refuses PLAIN and LOGIN, so plaintext
		// (tests, local relays) says so explicitly.
		auth := gomail.SMTPAuthAutoDiscover
		if t.SMTP.Security == rule.Plaintext {
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth),
			gomail.WithUsername(t.SMTP.Username), gomail.WithPassword(t.SMTP.Password.Reveal()))
	}
	client, err := gomail.NewClient(t.SMTP.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client: %w", err)
	}
	var pairs []string
	if p := t.SMTP.Password.Reveal(); p != "" {
		pairs = append(pairs, p, "[redacted]")
	}
	return &mailer{client: client, target: t, redact: strings.NewReplacer(pairs...)}, nil
}

// message renders n as a plain-text e-mail. Every try of one notification
// sends the same message, Message-ID included, so a recipient's server can
// tell a retry from a new alert.
func (ml *mailer) message(n notification) *gomail.Msg {
	msg := gomail.NewMsg()
	msg.SetUserAgent("switchboard-alert")
	msg.FromMailAddress(ml.target.From)
	msg.ToMailAddress(ml.target.To...)
	msg.Subject(emailSubject(n))
	msg.SetDateWithValue(n.at)
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, emailBody(n))
	return msg
}

// send delivers msg once. It returns the SMTP reply code behind a failure
// (0 when the server did not answer: connection, TLS or local failure) and
// an error whose text holds no password.
func (ml *mailer) send(ctx context.Context, msg *gomail.Msg) (int, error) {
	err := ml.client.DialAndSendWithContext(ctx, msg)
	if err == nil {
		return 0, nil
	}
	addr := net.JoinHostPort(ml.target.SMTP.Host, strconv.Itoa(ml.target.SMTP.Port))
	return smtpCode(err), errors.New(ml.redact.Replace("smtp " + addr + ": " + err.Error()))
}

// smtpRetryable reports whether a failed SMTP send may succeed later: no
// answer, or a 4xx (greylisting, mailbox busy, too many connections). A 5xx
// (mailbox unavailable, authentication failed, rejected) will not.
func smtpRetryable(code int) bool {
	return code == 0 || code/100 == 4
}

// smtpCode returns the SMTP reply code behind err, or 0 when the server did
// not answer.
func smtpCode(err error) int {
	if se, ok := errors.AsType[*gomail.SendError](err); ok && se.ErrorCode() != 0 {
		return se.ErrorCode()
	}
	if te, ok := errors.AsType[*textproto.Error](err); ok {
		return te.Code
	}
	return 0
}

// emailHead is the state a subject line and body start with.
func emailHead(n notification) string {
	switch {
	case n.state == resolved:
		return "RESOLVED"
	case n.reminder:
		return "STILL FIRING"
	}
	return "FIRING"
}

// emailSubject is "[FIRING] summary" on one line: a summary may quote a
// run's error, and a line break in a header would end it.
func emailSubject(n notification) string {
	oneLine := strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, n.summary)), " ")
	return "[" + emailHead(n) + "] " + truncate(oneLine, maxSubjectLen)
}

// emailBody is the plain-text body: the facts of the webhook's JSON
// document, for people.
func emailBody(n notification) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s · %s\n\n%s\n\n", emailHead(n), n.rule, n.subject, n.summary)
	facts := [][2]string{{"Rule", string(n.rule)}, {"Subject", n.subject}, {"Started", fmtTime(n.startedAt)}}
	if n.state == resolved {
		facts = append(facts, [2]string{"Resolved", fmtTime(n.at) + ", after " + fmtDuration(n.at.Sub(n.startedAt))})
	}
	if d := n.dead; d != nil {
		facts = append(facts, [][2]string{
			{"Run", d.RunID}, {"Event", d.EventID}, {"Source", d.Source}, {"Step", d.Step},
			{"System", d.System}, {"Attempts", strconv.Itoa(d.Attempts)},
		}...)
	}
	writeFacts(&b, facts, "")
	var details [][2]string
	for _, k := range slices.Sorted(maps.Keys(n.details)) {
		if k != "error" {
			details = append(details, [2]string{k, detailText(n.details[k])})
		}
	}
	if len(details) > 0 {
		b.WriteString("\nDetails:\n")
		writeFacts(&b, details, "  ")
	}
	if n.dead != nil && n.dead.Error != "" {
		b.WriteString("\nLast error:\n")
		for line := range strings.Lines(truncate(n.dead.Error, maxEmailErrorLen)) {
			b.WriteString("  " + strings.TrimRight(line, "\r\n") + "\n")
		}
	}
	if n.link != "" {
		b.WriteString("\nOpen in console: " + n.link + "\n")
	}
	return b.String()
}

// writeFacts writes "name: value" lines with the values aligned, leaving
// out empty values.
func writeFacts(b *strings.Builder, facts [][2]string, indent string) {
	width := 0
	for _, f := range facts {
		width = max(width, len(f[0]))
	}
	for _, f := range facts {
		if f[1] != "" {
			fmt.Fprintf(b, "%s%-*s %s\n", indent, width+1, f[0]+":", f[1])
		}
	}
}

// detailText writes a details value as the webhook's JSON would show it.
func detailText(v any) string {
	switch v := v.(type) {
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		return strings.Join(strings.Fields(v), " ")
	}
	return fmt.Sprint(v)
}
