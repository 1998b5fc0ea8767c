package cli

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/internal/app"
	"github.com/switchboard-dev/switchboard/internal/config"
	"github.com/switchboard-dev/switchboard/internal/delivery"
	"github.com/switchboard-dev/switchboard/internal/signature"
	"github.com/switchboard-dev/switchboard/internal/store"
)

//go:embed demo.yaml
var demoConfig string

const demoSecret = "demo-secret"

// demoLeads are the sample form submissions the demo posts, in order.
var demoLeads = []struct{ note, body string }{
	{"a new lead", `{"submission_id":"s-1","email":"ann@example.com","first_name":"Ann","phone":"+15550100"}`},
	{"the CRM answers 503 at first", `{"submission_id":"s-2","email":"bob@example.com","first_name":"Bob","phone":"+15550101"}`},
	{"the SMS provider answers 429, Retry-After: 2", `{"submission_id":"s-3","email":"cara@example.com","first_name":"Cara","phone":"+15550102"}`},
	{"the form posts Ann's submission again", `{"submission_id":"s-1","email":"ann@example.com","first_name":"Ann","phone":"+15550100"}`},
	{"an email the CRM refuses with 400", `{"submission_id":"s-4","email":"not-an-email","first_name":"Dan","phone":"+15550103"}`},
}

func runDemo(ctx context.Context, e env, args []string) error {
	fs := flags("demo", e)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (use 127.0.0.1:0 for any free port)")
	dir := fs.String("dir", "", "directory for the demo's config and database (default: a new temporary directory)")
	exit := fs.Bool("exit", false, "exit once the sample events are settled instead of serving until Ctrl-C")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "switchboard-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}
	crm, sms := newFakeCRM(), newFakeSMS()
	crmURL, stopCRM, err := serveLoopback(crm)
	if err != nil {
		return err
	}
	defer stopCRM()
	smsURL, stopSMS, err := serveLoopback(sms)
	if err != nil {
		return err
	}
	defer stopSMS()

	cfgPath := filepath.Join(*dir, "demo.yaml")
	if err := os.WriteFile(cfgPath, []byte(demoConfig), 0o600); err != nil {
		return err
	}
	demoEnv := map[string]string{"CRM_URL": crmURL, "SMS_URL": smsURL, "FORM_SECRET": demoSecret}
	getenv := func(k string) (string, bool) {
		if v, ok := demoEnv[k]; ok {
			return v, true
		}
		return e.getenv(k)
	}
	c, err := config.Parse(cfgPath, []byte(demoConfig), getenv)
	if err != nil {
		return err
	}
	plan, err := app.Compile(c)
	if err != nil {
		return err
	}
	out := &demoPrinter{w: e.stdout, start: time.Now(), settled: make(chan struct{}), want: 4}
	logFile, err := os.Create(filepath.Join(*dir, "switchboard.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log, _ := newLogger(logFile, "info")
	srv, err := app.NewServer(ctx, plan, app.Options{Logger: log, Observe: out.report, PollInterval: 50 * time.Millisecond})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w (try --addr 127.0.0.1:0)", err)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, "Switchboard demo: lead capture, web form → CRM contact → SMS acknowledgment\n")
	fmt.Fprintf(e.stdout, "  listening   %s   (fake CRM %s, fake SMS %s)\n", base, crmURL, smsURL)
	fmt.Fprintf(e.stdout, "  config      %s\n  store       %s\n  JSON log    %s\n\n", cfgPath, plan.Store, logFile.Name())

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, ln) }()

	hmac := signature.HMAC{Header: "X-Signature", Secret: []byte(demoSecret), Prefix: "sha256="}
	for _, lead := range demoLeads {
		if err := out.post(ctx, base+"/hooks/web_form", hmac, lead.note, lead.body); err != nil {
			stop()
			return errors.Join(err, <-serveErr)
		}
		time.Sleep(150 * time.Millisecond)
	}
	select {
	case <-out.settled:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(e.stdout, "  (some runs are still retrying; see `events list`)")
	case <-ctx.Done():
	}
	fmt.Fprintf(e.stdout, "\nAll sample events settled. Inspect them:\n")
	fmt.Fprintf(e.stdout, "  go run ./cmd/switchboard events list --config %s\n", cfgPath)
	fmt.Fprintf(e.stdout, "  go run ./cmd/switchboard dlq list --config %s\n", cfgPath)
	if *exit {
		stop()
		return <-serveErr
	}
	fmt.Fprintf(e.stdout, "\nStill serving on %s; post more leads (Ctrl-C to stop):\n", base)
	fmt.Fprintf(e.stdout, "  body='{\"submission_id\":\"s-9\",\"email\":\"eve@example.com\",\"first_name\":\"Eve\",\"phone\":\"+15550199\"}'\n")
	fmt.Fprintf(e.stdout, "  curl -i %s/hooks/web_form -H 'Content-Type: application/json' \\\n", base)
	fmt.Fprintf(e.stdout, "    -H \"X-Signature: sha256=$(printf %%s \"$body\" | openssl dgst -sha256 -hmac %s | cut -d' ' -f2)\" -d \"$body\"\n\n", demoSecret)
	return <-serveErr
}

// demoPrinter prints each event's outcome as it happens.
type demoPrinter struct {
	w     io.Writer
	start time.Time
	want  int

	mu      sync.Mutex // guards the fields below
	done    int
	leads   map[string]string // event ID -> email
	settled chan struct{}
	// early holds the reports of events whose webhook's answer had not
	// reached post yet (on a busy machine a run can be delivered first):
	// printed once post knows whose lead they are.
	early map[string][]delivery.Report
}

// printfLocked prints one line; p.mu is held.
func (p *demoPrinter) printfLocked(format string, args ...any) {
	fmt.Fprintf(p.w, "%6.2fs  "+format+"\n", append([]any{time.Since(p.start).Seconds()}, args...)...)
}

func (p *demoPrinter) post(ctx context.Context, url string, h signature.HMAC, note, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(h.Header, h.Sign([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post sample event: %w", err)
	}
	defer resp.Body.Close()
	var r struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	var lead struct{ Email string }
	_ = json.Unmarshal([]byte(body), &lead)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leads == nil {
		p.leads = map[string]string{}
	}
	p.leads[r.EventID] = lead.Email
	switch {
	case r.Duplicate:
		p.printfLocked("DUPLICATE  %-18s HTTP %d, event %s already stored: skipped, nothing sent again (%s)", lead.Email, resp.StatusCode, r.EventID, note)
	case resp.StatusCode == http.StatusAccepted:
		p.printfLocked("RECEIVED   %-18s HTTP 202, stored as %s (%s)", lead.Email, r.EventID, note)
	default:
		p.printfLocked("REJECTED   %-18s HTTP %d", lead.Email, resp.StatusCode)
	}
	for _, er := range p.early[r.EventID] {
		p.reportLocked(er)
	}
	delete(p.early, r.EventID)
	return nil
}

func (p *demoPrinter) report(r delivery.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.leads[r.EventID]; !ok {
		if p.early == nil {
			p.early = map[string][]delivery.Report{}
		}
		p.early[r.EventID] = append(p.early[r.EventID], r)
		return
	}
	p.reportLocked(r)
}

func (p *demoPrinter) reportLocked(r delivery.Report) {
	email := p.leads[r.EventID]
	step := r.Flow + "/" + r.Step
	switch r.Outcome {
	case store.AttemptSucceeded:
		p.printfLocked("DELIVERED  %-18s %s → %s, HTTP %d (attempt %d)", email, step, r.System, r.Status, r.Attempt)
	case store.AttemptRetry:
		p.printfLocked("RETRYING   %-18s %s → %s failed (%s); attempt %d, next in %s", email, step, r.System, short(r.Err.Error(), 60), r.Attempt, r.Wait.Round(time.Millisecond))
	case store.AttemptDead:
		p.printfLocked("DEAD       %-18s %s → %s: %s; dead-lettered", email, step, r.System, short(r.Err.Error(), 80))
	}
	if r.Done {
		p.done++
		if p.done == p.want {
			close(p.settled)
		}
	}
}

// serveLoopback serves h on a free loopback port.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// fakeSystem is an in-process stand-in for a SaaS API: it dedupes by
// Idempotency-Key like a well-behaved API and fails on cue.
type fakeSystem struct {
	mu   sync.Mutex // guards the fields below
	seen map[string]int
	fail func(body map[string]any, calls int) (status int, retryAfter string)
	made string
}

func (f *fakeSystem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &body)
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.seen[key]++
	calls := f.seen[key]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status, ra := f.fail(body, calls); status != 0 {
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q}`, http.StatusText(status))
		return
	}
	id := fmt.Sprintf("%s_%x", f.made, bytes.TrimSpace([]byte(key))[len(key)-6:])
	fmt.Fprintf(w, `{"id":%q}`, id)
}

func newFakeCRM() *fakeSystem {
	return &fakeSystem{seen: map[string]int{}, made: "contact", fail: func(b map[string]any, calls int) (int, string) {
		email, _ := b["email"].(string)
		switch {
		case !strings.Contains(email, "@"):
			return http.StatusBadRequest, ""
		case email == "bob@example.com" && calls <= 2:
			return http.StatusServiceUnavailable, ""
		}
		return 0, ""
	}}
}

func newFakeSMS() *fakeSystem {
	return &fakeSystem{seen: map[string]int{}, made: "sms", fail: func(b map[string]any, calls int) (int, string) {
		if b["to"] == "+15550102" && calls == 1 {
			return http.StatusTooManyRequests, "2"
		}
		return 0, ""
	}}
}
