package flow

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-dev/switchboard/internal/alert/rule"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/secret"
)

// SMTP ports with a meaning of their own, as in the email connector.
const (
	defaultSMTPPort = 587
	implicitTLSPort = 465
)

// headerNameRe is RFC 9110's token: the characters a header name may use.
var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// alerts compiles the alerts: section; nil when the config has none.
func (cp *compiler) alerts(a *config.Alerts) *rule.Set {
	if a == nil {
		return nil
	}
	set := &rule.Set{
		EvaluateEvery: defaultDur(a.EvaluateEvery, rule.DefaultEvaluateEvery),
		RemindEvery:   defaultDur(a.RemindEvery, rule.DefaultRemindEvery),
	}
	if a.EvaluateEvery < 0 || a.EvaluateEvery > 0 && a.EvaluateEvery < time.Second {
		// Each evaluation queries the store; more often than every second
		// would load it for nothing.
		cp.errorf(cp.node("alerts.evaluate_every"), "alerts.evaluate_every", "must be at least 1s")
	}
	if a.RemindEvery < 0 {
		cp.errorf(cp.node("alerts.remind_every"), "alerts.remind_every", "must be positive")
	}
	if a.ConsoleURL != "" {
		if u, err := url.Parse(a.ConsoleURL); err != nil || !absoluteHTTP(u) || u.RawQuery != "" || u.Fragment != "" {
			cp.errorf(cp.node("alerts.console_url"), "alerts.console_url", "must be an absolute http or https URL without query or fragment, such as https://switchboard.example.com")
		}
		set.ConsoleURL = strings.TrimRight(a.ConsoleURL, "/")
	}
	for i, n := range a.Notify {
		if t, ok := cp.alertTarget(fmt.Sprintf("alerts.notify[%d]", i), n); ok {
			set.Targets = append(set.Targets, t)
		}
	}
	for i, n := range a.Rules {
		if r, ok := cp.alertRule(fmt.Sprintf("alerts.rules[%d]", i), n, set.EvaluateEvery); ok {
			set.Rules = append(set.Rules, r)
		}
	}
	switch {
	case len(a.Rules) > 0 && len(a.Notify) == 0:
		cp.errorf(cp.node("alerts"), "alerts.notify", "required when there are rules: at least one slack:, webhook: or email: target")
	case len(a.Rules) == 0 && len(a.Notify) > 0:
		cp.warnf(cp.node("alerts"), "alerts: notify is set but there are no rules; nothing will alert")
	}
	return set
}

// alertTarget compiles one notify: item. Errors never quote a URL, a
// header value or a password: they are credentials.
func (cp *compiler) alertTarget(path string, n config.Notify) (rule.Target, bool) {
	at := cp.node(path)
	kinds := 0
	for _, set := range []bool{n.Slack != nil, n.Webhook != nil, n.Email != nil} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		cp.errorf(at, path, "a target has exactly one of slack:, webhook: or email:; write each as its own list item")
		return rule.Target{}, false
	case n.Slack != nil:
		return rule.Target{Kind: rule.Slack, URL: n.Slack.WebhookURL}, cp.targetURL(path+".slack", "webhook_url", n.Slack.WebhookURL)
	case n.Webhook != nil:
		ok := cp.targetURL(path+".webhook", "url", n.Webhook.URL)
		for _, name := range slices.Sorted(maps.Keys(n.Webhook.Headers)) {
			hp := path + ".webhook.headers." + name
			if !headerNameRe.MatchString(name) {
				cp.errorf(cp.node(path+".webhook.headers"), hp, "%q is not a valid header name", name)
				ok = false
			}
			if strings.ContainsAny(n.Webhook.Headers[name].Reveal(), "\r\n") {
				cp.errorf(cp.node(hp), hp, "a header value cannot contain a line break")
				ok = false
			}
		}
		return rule.Target{Kind: rule.Webhook, URL: n.Webhook.URL, Headers: n.Webhook.Headers}, ok
	case n.Email != nil:
		e, ok := cp.emailTarget(path+".email", n.Email)
		return rule.Target{Kind: rule.Email, Email: e}, ok
	}
	cp.errorf(at, path, "want slack: {webhook_url: …}, webhook: {url: …} or email: {smtp: …, from: …, to: […]}")
	return rule.Target{}, false
}

// emailTarget compiles an email: target at path. Its smtp: rules are the
// email connector's, so one server block works in both places.
func (cp *compiler) emailTarget(path string, e *config.EmailNotify) (*rule.EmailTarget, bool) {
	errs := len(cp.errs)
	// at is the node of key, or of its parent when the key is absent.
	at := func(parent, key string) *yaml.Node {
		if n := cp.node(parent + "." + key); n != nil {
			return n
		}
		return cp.node(parent)
	}
	out := &rule.EmailTarget{}
	if e.SMTP == nil {
		cp.errorf(cp.node(path), path+".smtp", "required: the SMTP server, {host: …}")
	} else {
		out.SMTP = cp.smtpServer(path+".smtp", e.SMTP, at)
	}
	switch from, err := mail.ParseAddress(e.From); {
	case e.From == "":
		cp.errorf(cp.node(path), path+".from", "required: the sender's address")
	case err != nil:
		cp.errorf(at(path, "from"), path+".from", "%q is not an e-mail address", e.From)
	default:
		out.From = from
	}
	if len(e.To) == 0 {
		cp.errorf(at(path, "to"), path+".to", "required: at least one recipient's address")
	}
	for i, s := range e.To {
		p := fmt.Sprintf("%s.to[%d]", path, i)
		to, err := mail.ParseAddress(s)
		if err != nil {
			cp.errorf(cp.node(p), p, "%q is not an e-mail address (write one address per item)", s)
			continue
		}
		out.To = append(out.To, to)
	}
	return out, len(cp.errs) == errs
}

// smtpServer checks an smtp: block at path and resolves its TLS mode.
func (cp *compiler) smtpServer(path string, c *config.SMTPServer, at func(parent, key string) *yaml.Node) rule.SMTP {
	s := rule.SMTP{Host: c.Host, Port: cmp.Or(c.Port, defaultSMTPPort), Username: c.Username, Password: c.Password, Security: rule.StartTLS}
	switch {
	case c.Host == "":
		cp.errorf(cp.node(path), path+".host", "required: the server's host name")
	case net.ParseIP(c.Host) == nil && (strings.ContainsAny(c.Host, " /:@[]") || strings.HasPrefix(c.Host, "unix")):
		cp.errorf(at(path, "host"), path+".host", "want a host name or IP address, without port or scheme")
	}
	if c.Port < 0 || c.Port > 65535 {
		cp.errorf(at(path, "port"), path+".port", "want 1 to 65535")
	}
	switch {
	case c.Username == "" && !c.Password.IsZero():
		cp.errorf(cp.node(path), path+".username", "required with password")
	case c.Username != "" && c.Password.IsZero():
		cp.errorf(cp.node(path), path+".password", "required with username")
	}
	implicit := s.Port == implicitTLSPort
	switch {
	case c.InsecurePlaintext && implicit:
		cp.errorf(at(path, "insecure_plaintext"), path+".insecure_plaintext", "port 465 is implicit TLS")
	case c.InsecurePlaintext && c.StartTLS != nil && *c.StartTLS:
		cp.errorf(at(path, "starttls"), path+".starttls", "conflicts with insecure_plaintext")
	case implicit && c.StartTLS != nil && *c.StartTLS:
		cp.errorf(at(path, "starttls"), path+".starttls", "port 465 uses implicit TLS, not STARTTLS; leave starttls unset")
	case !implicit && !c.InsecurePlaintext && c.StartTLS != nil && !*c.StartTLS:
		// Mail and the password never cross the network in clear text
		// by accident.
		cp.errorf(at(path, "starttls"), path+".starttls", "may be false only with port 465 (implicit TLS) or insecure_plaintext: true")
	case implicit:
		s.Security = rule.ImplicitTLS
	case c.InsecurePlaintext:
		s.Security = rule.Plaintext
	}
	return s
}

// targetURL checks a target's URL at path (parent.key).
func (cp *compiler) targetURL(parent, key string, v secret.Value) bool {
	path := parent + "." + key
	if v.IsZero() {
		cp.errorf(cp.node(parent), path, "required")
		return false
	}
	if u, err := url.Parse(v.Reveal()); err != nil || !absoluteHTTP(u) {
		cp.errorf(cp.node(path), path, "must be an absolute http or https URL")
		return false
	}
	return true
}

func absoluteHTTP(u *url.URL) bool {
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// alertRule compiles one rules: item, a mapping whose one key is the kind.
func (cp *compiler) alertRule(path string, n *yaml.Node, every time.Duration) (rule.Rule, bool) {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		cp.errorf(n, path, "want a mapping with one rule kind as its key (%s)", kindList())
		return rule.Rule{}, false
	}
	if len(n.Content) > 2 {
		var keys []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		cp.errorf(n.Content[2], path, "a rule has exactly one kind key, got %s; write each rule as its own list item", strings.Join(keys, ", "))
		return rule.Rule{}, false
	}
	k, v := n.Content[0], n.Content[1]
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	rc := ruleCompiler{cp: cp, path: path + "." + k.Value, at: v, d: &config.Decoder{File: cp.file, Getenv: cp.c.Getenv}}
	r := rule.Rule{Kind: rule.Kind(k.Value), Where: fmt.Sprintf("%s:%d:%d", cp.file, k.Line, k.Column)}
	errs := len(cp.errs)
	switch r.Kind {
	case rule.DeadLetter:
		if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
			if v.Value != "any" {
				cp.errorf(v, rc.path, "want any or {flow: NAME}, got %q", v.Value)
			}
			break
		}
		if v.Kind != yaml.MappingNode {
			cp.errorf(v, rc.path, "want any or {flow: NAME}")
			break
		}
		var c config.DeadLetterRule
		if rc.decode(&c) {
			r.Flow = rc.flow(c.Flow)
		}
	case rule.QueueDepth:
		var c config.QueueDepthRule
		if rc.decode(&c) {
			r.Flow = rc.flow(c.Flow)
			r.Depth = required(rc, "above", c.Above, "the number of waiting runs above which it fires")
			r.For = c.For
			rc.check(r.Depth >= 0, "above", "must not be negative")
			rc.check(c.For >= 0, "for", "must not be negative")
		}
	case rule.OldestPending:
		var c config.OldestPendingRule
		if rc.decode(&c) {
			r.Flow = rc.flow(c.Flow)
			r.Age = required(rc, "above", c.Above, "the age of the oldest waiting run above which it fires")
			rc.check(c.Above == nil || r.Age > 0, "above", "must be positive")
		}
	case rule.LagP95:
		var c config.LagP95Rule
		if rc.decode(&c) {
			r.Flow = rc.flow(c.Flow)
			r.Age = required(rc, "above", c.Above, "the lag above which it fires")
			r.Window = defaultDur(c.Window, rule.DefaultWindow)
			rc.check(c.Above == nil || r.Age > 0, "above", "must be positive")
			rc.check(c.Window >= 0, "window", "must be positive")
		}
	case rule.ErrorRate:
		var c config.ErrorRateRule
		if rc.decode(&c) {
			if c.System != "" && !hasKey(cp.c.Systems, c.System) {
				cp.errorf(rc.node("system"), rc.path+".system", "unknown system %q%s", c.System, known(slices.Sorted(maps.Keys(cp.c.Systems))))
			}
			r.System = c.System
			r.Rate = required(rc, "above", c.Above, "the share of failed attempts, 0 to 1, above which it fires")
			r.Window = defaultDur(c.Window, rule.DefaultWindow)
			r.MinAttempts = defaultInt(c.MinAttempts, rule.DefaultMinAttempts)
			rc.check(r.Rate >= 0 && r.Rate < 1, "above", "must be a share from 0 to 1 (0.2 is 20%)")
			rc.check(c.Window >= 0, "window", "must be positive")
			rc.check(c.MinAttempts >= 0, "min_attempts", "must not be negative")
		}
	case rule.RisingBacklog:
		var c config.RisingBacklogRule
		if rc.decode(&c) {
			r.Flow = rc.flow(c.Flow)
			r.Window = required(rc, "over", c.Over, "the span over which the queue must grow")
			r.Growth = required(rc, "min_growth", c.MinGrowth, "how many more runs must wait at the end of the span")
			rc.check(c.Over == nil || r.Window > every, "over", fmt.Sprintf("must be longer than alerts.evaluate_every (%s): the queue is sampled once per evaluation", every))
			rc.check(c.MinGrowth == nil || r.Growth > 0, "min_growth", "must be at least 1")
		}
	case rule.SilentSource:
		var c config.SilentSourceRule
		if rc.decode(&c) {
			switch {
			case c.Source == "":
				cp.errorf(v, rc.path+".source", "required: the source expected to receive events")
			case !hasKey(cp.c.Sources, c.Source):
				cp.errorf(rc.node("source"), rc.path+".source", "unknown source %q%s", c.Source, known(slices.Sorted(maps.Keys(cp.c.Sources))))
			}
			r.Source = c.Source
			r.Age = required(rc, "for", c.For, "how long without an event is too long")
			rc.check(c.For == nil || r.Age > 0, "for", "must be positive")
		}
	case rule.PollCursor:
		var c config.PollCursorRule
		if rc.decode(&c) {
			r.Source = rc.timedSource(c.Source, true, func(s config.Source) string {
				if s.Poll == nil || s.Poll.Cursor == "" {
					return "is not a poll source with a cursor:"
				}
				return ""
			})
			r.Age = required(rc, "for", c.For, "how long the cursor may stand still")
			rc.check(c.For == nil || r.Age > 0, "for", "must be positive")
		}
	case rule.PollFailing:
		var c config.PollFailingRule
		if rc.decode(&c) {
			r.Source = rc.timedSource(c.Source, false, func(s config.Source) string {
				if s.Poll == nil && s.Schedule == nil {
					return "is not a timed source (poll: or schedule:)"
				}
				return ""
			})
			r.Count = defaultInt(ptrValue(c.Failures), rule.DefaultPollFailures)
			rc.check(c.Failures == nil || *c.Failures > 0, "failures", "must be at least 1")
		}
	case rule.BackstopFound:
		var c config.BackstopFoundRule
		if rc.decode(&c) {
			r.Source = rc.timedSource(c.Source, true, func(s config.Source) string {
				if s.Poll == nil || s.Poll.BackstopFor == "" {
					return "is not a poll source with backstop_for:"
				}
				return ""
			})
			r.Count = ptrValue(c.Above)
			rc.check(c.Above == nil || *c.Above >= 0, "above", "must not be negative")
		}
	default:
		cp.errorf(k, rc.path, "unknown rule kind %q (known: %s)", k.Value, kindList())
	}
	return r, len(cp.errs) == errs
}

// ruleCompiler decodes and checks the value of one rule.
type ruleCompiler struct {
	cp   *compiler
	path string     // alerts.rules[i].KIND
	at   *yaml.Node // the rule's value
	d    *config.Decoder
}

// decode decodes the rule's value into c and reports whether that worked.
func (rc ruleCompiler) decode(c any) bool {
	if rc.at.Kind != yaml.MappingNode {
		rc.cp.errorf(rc.at, rc.path, "want a mapping of the rule's settings")
		return false
	}
	rc.d.Decode(rc.at, rc.path, c)
	rc.cp.errs = append(rc.cp.errs, rc.d.Errs...)
	return len(rc.d.Errs) == 0
}

// node is the value of the rule's key, or the rule when the key is absent.
func (rc ruleCompiler) node(key string) *yaml.Node {
	if n := child(rc.at, key); n != nil {
		return n
	}
	return rc.at
}

// flow checks a rule's optional flow: name.
func (rc ruleCompiler) flow(name string) string {
	if name != "" && !hasKey(rc.cp.c.Flows, name) {
		rc.cp.errorf(rc.node("flow"), rc.path+".flow", "unknown flow %q%s", name, known(slices.Sorted(maps.Keys(rc.cp.c.Flows))))
	}
	return name
}

func (rc ruleCompiler) check(ok bool, key, msg string) {
	if !ok {
		rc.cp.errorf(rc.node(key), rc.path+"."+key, "%s", msg)
	}
}

// required reports a missing threshold and returns its value otherwise.
func required[T any](rc ruleCompiler, key string, v *T, what string) T {
	var zero T
	if v == nil {
		rc.cp.errorf(rc.at, rc.path+"."+key, "required: %s", what)
		return zero
	}
	return *v
}

// timedSource checks the source: of a poll rule; bad says what is wrong
// with a source of the wrong kind, or "".
func (rc ruleCompiler) timedSource(name string, need bool, bad func(config.Source) string) string {
	switch s, ok := rc.cp.c.Sources[name]; {
	case name == "" && need:
		rc.cp.errorf(rc.at, rc.path+".source", "required: the source to watch")
	case name == "":
	case !ok:
		rc.cp.errorf(rc.node("source"), rc.path+".source", "unknown source %q%s", name, known(slices.Sorted(maps.Keys(rc.cp.c.Sources))))
	case bad(s) != "":
		rc.cp.errorf(rc.node("source"), rc.path+".source", "source %q %s", name, bad(s))
	}
	return name
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func kindList() string {
	var names []string
	for _, k := range rule.Kinds {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}
