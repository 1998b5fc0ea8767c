package email

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

var sendSpec = connector.ActionSpec{
	Name:    "send",
	Doc:     "Sends one e-mail.",
	Outputs: "{message_id}: the Message-ID for SMTP (with response, the server's acceptance line), SendGrid's X-Message-Id",
	Writes:  "", // a message, not an entity with a system of record
	Inputs: []connector.Input{
		{Name: "to", Required: true, Type: connector.TypeStrings, Doc: `Recipients: an address ("ann@example.com", "Ann <ann@example.com>"), a comma-separated list, or a list of addresses.`},
		{Name: "subject", Required: true, Type: connector.TypeString, Doc: "The subject line."},
		{Name: "text", Type: connector.TypeString, Doc: "The plain-text body. text, html or both are required; with both, mail clients pick one."},
		{Name: "html", Type: connector.TypeString, Doc: "The HTML body."},
		{Name: "from", Type: connector.TypeString, Doc: "The sender, overriding the system's from."},
		{Name: "reply_to", Type: connector.TypeString, Doc: "The Reply-To address, overriding the system's reply_to."},
		{Name: "cc", Type: connector.TypeStrings, Doc: "Cc recipients, in the forms to accepts."},
		{Name: "bcc", Type: connector.TypeStrings, Doc: "Bcc recipients, in the forms to accepts; they appear in no header."},
	},
}

// message is a checked send request.
type message struct {
	from, replyTo *mail.Address // replyTo may be nil
	to, cc, bcc   []*mail.Address
	subject       string
	text, html    string
}

// send is the send action of one system.
type send struct {
	sys *system
}

// Do checks the inputs (problems are permanent) and hands the message to
// the system's transport.
func (a *send) Do(ctx context.Context, req connector.Request) (connector.Result, error) {
	m, err := a.sys.parseMessage(req.Input)
	if err != nil {
		return connector.Result{}, connector.Permanent(err)
	}
	return a.sys.tr.send(ctx, m, req.IdempotencyKey)
}

func (s *system) parseMessage(in map[string]any) (*message, error) {
	var accepted []string
	for _, inp := range sendSpec.Inputs {
		accepted = append(accepted, inp.Name)
	}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if !slices.Contains(accepted, k) {
			return nil, fmt.Errorf("input %q: unknown input (accepted: %s)", k, strings.Join(accepted, ", "))
		}
	}
	m := &message{from: s.from, replyTo: s.replyTo}
	var err error
	wrap := func(name string, e error) error {
		if e != nil {
			return fmt.Errorf("input %q: %w", name, e)
		}
		return nil
	}
	if m.to, err = addressList(in["to"]); err != nil {
		return nil, wrap("to", err)
	}
	if len(m.to) == 0 {
		return nil, wrap("to", errors.New("required"))
	}
	if m.cc, err = addressList(in["cc"]); err != nil {
		return nil, wrap("cc", err)
	}
	if m.bcc, err = addressList(in["bcc"]); err != nil {
		return nil, wrap("bcc", err)
	}
	for _, f := range []struct {
		name string
		dst  **mail.Address
	}{{"from", &m.from}, {"reply_to", &m.replyTo}} {
		v, err := webapi.OptionalString(in[f.name])
		if err != nil {
			return nil, wrap(f.name, err)
		}
		if v == "" {
			continue
		}
		if *f.dst, err = parseAddress(v); err != nil {
			return nil, wrap(f.name, err)
		}
	}
	if m.from == nil {
		return nil, errors.New(`input "from": required, since the system sets no from`)
	}
	if m.subject, err = webapi.OptionalString(in["subject"]); err != nil {
		return nil, wrap("subject", err)
	}
	switch {
	case strings.TrimSpace(m.subject) == "":
		return nil, wrap("subject", errors.New("required"))
	case strings.ContainsAny(m.subject, "\r\n"):
		// A line break in a header would let the event's data add headers.
		return nil, wrap("subject", errors.New("must not contain line breaks"))
	}
	if m.text, err = webapi.OptionalString(in["text"]); err != nil {
		return nil, wrap("text", err)
	}
	if m.html, err = webapi.OptionalString(in["html"]); err != nil {
		return nil, wrap("html", err)
	}
	if m.text == "" && m.html == "" {
		return nil, wrap("text", errors.New("required unless html is set"))
	}
	return m, nil
}

// addressList reads a string (one address or a comma-separated list) or a
// list of such strings. null is an empty list.
func addressList(v any) ([]*mail.Address, error) {
	var items []string
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		items = []string{v}
	case []any:
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("want a string or a list of strings, got a list holding %s", webapi.TypeName(item))
			}
			items = append(items, s)
		}
	default:
		return nil, fmt.Errorf("want a string or a list of strings, got %s", webapi.TypeName(v))
	}
	var out []*mail.Address
	for _, s := range items {
		if strings.TrimSpace(s) == "" {
			continue
		}
		list, err := mail.ParseAddressList(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an e-mail address or list of them", s)
		}
		out = append(out, list...)
	}
	return out, nil
}

// parseAddress parses one address, "" being none.
func parseAddress(s string) (*mail.Address, error) {
	if s == "" {
		return nil, nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an e-mail address", s)
	}
	return a, nil
}

// messageID derives the Message-ID (without angle brackets) from the
// idempotency key, so every retry of a step sends the same Message-ID:
// receiving systems that see the message twice (our first attempt went
// through, but its answer was lost) can tell it is one message, and an
// operator can find it by the key. A key that is not safe in a Message-ID
// is hashed.
func messageID(idempotencyKey string, from *mail.Address) string {
	if idempotencyKey == "" {
		return ""
	}
	domain := "switchboard.invalid"
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 && at+1 < len(from.Address) {
		domain = from.Address[at+1:]
	}
	local := idempotencyKey
	atext := func(r rune) bool {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
	}
	if len(local) > 64 || strings.ContainsFunc(local, func(r rune) bool { return !atext(r) }) {
		sum := sha256.Sum256([]byte(idempotencyKey))
		local = "sb-" + hex.EncodeToString(sum[:16])
	}
	return local + "@" + domain
}
