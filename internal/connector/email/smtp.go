package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

// smtpTransport sends through an SMTP server with go-mail, one connection
// per message: a step's send is independent of every other, and a pooled
// connection would need its own health checks and limits.
type smtpTransport struct {
	client   *gomail.Client // safe for concurrent DialAndSendWithContext
	addr     string         // host:port, for error messages
	redactor *strings.Replacer
}

func newSMTP(c *SMTPConfig, timeout time.Duration) (*smtpTransport, error) {
	opts := []gomail.Option{
		gomail.WithPort(c.port()),
		gomail.WithTimeout(timeout),
	}
	switch {
	case c.port() == implicitTLSPort:
		opts = append(opts, gomail.WithSSL())
	case c.InsecurePlaintext:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if c.Username != "" {
		// Over TLS, go-mail picks the strongest mechanism the server
		// offers (SCRAM, CRAM-MD5, PLAIN, LOGIN). Without TLS it refuses
		// PLAIN and LOGIN, so insecure_plaintext says so explicitly.
		auth := gomail.SMTPAuthAutoDiscover
		if c.InsecurePlaintext {
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth),
			gomail.WithUsername(c.Username), gomail.WithPassword(c.Password.Reveal()))
	}
	client, err := gomail.NewClient(c.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	var pairs []string
	if p := c.Password.Reveal(); p != "" {
		pairs = append(pairs, p, "[redacted]")
	}
	return &smtpTransport{
		client:   client,
		addr:     net.JoinHostPort(c.Host, strconv.Itoa(c.port())),
		redactor: strings.NewReplacer(pairs...),
	}, nil
}

// setTLSConfig replaces the TLS settings; tests use it to trust their
// server's self-signed certificate.
func (t *smtpTransport) setTLSConfig(cfg *tls.Config) error {
	return t.client.SetTLSConfig(cfg)
}

// send builds the MIME message with go-mail and delivers it. The answer's
// reply code decides: 5xx (550 mailbox unavailable, 535 authentication
// failed, 554 rejected) is permanent; 4xx (greylisting, mailbox full,
// too many connections) and connection or TLS failures are transient.
func (t *smtpTransport) send(ctx context.Context, m *message, idempotencyKey string) (connector.Result, error) {
	msg := gomail.NewMsg()
	msg.SetUserAgent("switchboard")
	msg.FromMailAddress(m.from)
	msg.ToMailAddress(m.to...)
	if len(m.cc) > 0 {
		msg.CcMailAddress(m.cc...)
	}
	if len(m.bcc) > 0 {
		msg.BccMailAddress(m.bcc...)
	}
	if m.replyTo != nil {
		msg.ReplyToMailAddress(m.replyTo)
	}
	msg.Subject(m.subject)
	msg.SetDate()
	id := messageID(idempotencyKey, m.from)
	if id != "" {
		msg.SetMessageIDWithValue(id)
	} else {
		msg.SetMessageID()
		id = strings.Trim(msg.GetMessageID(), "<>")
	}
	switch {
	case m.text != "" && m.html != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.html)
	case m.text != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.text)
	default:
		msg.SetBodyString(gomail.TypeTextHTML, m.html)
	}

	if err := t.client.DialAndSendWithContext(ctx, msg); err != nil {
		return connector.Result{Status: smtpCode(err)}, t.classify(err)
	}
	// The server accepted the message with 250; ServerResponse is the rest
	// of that reply line, often naming its queue id.
	resp := msg.ServerResponse()
	return connector.Result{
		Output: map[string]any{"message_id": id, "response": resp},
		Status: 250,
		Body:   []byte(resp),
	}, nil
}

func (t *smtpTransport) classify(err error) error {
	code := smtpCode(err)
	e := webapi.Redact(t.redactor, "smtp "+t.addr+": "+err.Error(), err)
	if code >= 500 && code < 600 {
		return connector.Permanent(e)
	}
	return e
}

// smtpCode returns the SMTP reply code behind err, or 0 when the server did
// not answer (connection, TLS or local failure).
func smtpCode(err error) int {
	if se, ok := errors.AsType[*gomail.SendError](err); ok && se.ErrorCode() != 0 {
		return se.ErrorCode()
	}
	if te, ok := errors.AsType[*textproto.Error](err); ok {
		return te.Code
	}
	return 0
}
