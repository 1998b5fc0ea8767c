package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig shapes one load run.
type loadConfig struct {
	URL         string
	Connections int
	Duration    time.Duration
	// Rate, when > 0, sends at this many requests per second (open loop)
	// and measures latency from each request's intended start, so a stall
	// shows up in every request that waited behind it (no coordinated
	// omission). 0 is closed loop: each connection sends as fast as
	// answers come back.
	Rate float64
	// Body returns the request body for request number n and the event id
	// it carries (a duplicate carries an earlier request's id).
	Body func(n int64) (body []byte, id int64)
}

// loadResult is what one load run measured.
type loadResult struct {
	Requests  int64
	Accepted  int64 // 202
	Duplicate int64 // 200 with Switchboard-Duplicate
	Failed    int64 // errors and other statuses
	Elapsed   time.Duration
	latencies []time.Duration
	// AckedIDs holds the event ids answered 202 or 200-duplicate: every
	// one of them must be delivered exactly once.
	AckedIDs map[int64]bool
}

func (r *loadResult) rps() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// percentile returns the p-th percentile (0 < p < 100) latency.
func (r *loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies)-1) * p / 100)
	return r.latencies[i]
}

// runLoad drives cfg.URL with POST requests until cfg.Duration passes.
func runLoad(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	tr := &http.Transport{
		MaxIdleConns: cfg.Connections, MaxIdleConnsPerHost: cfg.Connections, MaxConnsPerHost: cfg.Connections,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var seq atomic.Int64
	// A sample per request, 16 bytes: the bench process's peak RSS is
	// meant to show the node's, so the load generator keeps little.
	type sample struct {
		n      int64
		latUS  uint32 // latency in µs (71 minutes at most)
		status uint16
		dup    bool
	}
	perConn := make([][]sample, cfg.Connections)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var intended chan time.Time
	if cfg.Rate > 0 {
		intended = make(chan time.Time, 1<<16)
		go func() {
			defer close(intended)
			interval := time.Duration(float64(time.Second) / cfg.Rate)
			for i := 0; ; i++ {
				at := start.Add(time.Duration(i) * interval)
				if at.After(deadline) || ctx.Err() != nil {
					return
				}
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				intended <- at
			}
		}()
	}
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for c := range cfg.Connections {
		wg.Go(func() {
			var buf []sample
			for ctx.Err() == nil {
				var from time.Time
				if intended != nil {
					at, ok := <-intended
					if !ok {
						break
					}
					from = at
				} else {
					from = time.Now()
					if from.After(deadline) {
						break
					}
				}
				body, n := cfg.Body(seq.Add(1))
				status, dup, err := post(ctx, client, cfg.URL, body)
				if err != nil && firstErr.Load() == nil && ctx.Err() == nil {
					firstErr.Store(err)
				}
				lat := min(time.Since(from).Microseconds(), math.MaxUint32)
				buf = append(buf, sample{latUS: uint32(lat), status: uint16(status), dup: dup, n: n})
			}
			perConn[c] = buf
		})
	}
	wg.Wait()
	res := &loadResult{Elapsed: time.Since(start), AckedIDs: map[int64]bool{}}
	total := 0
	for _, buf := range perConn {
		total += len(buf)
	}
	res.latencies = make([]time.Duration, 0, total)
	for _, buf := range perConn {
		for _, s := range buf {
			res.Requests++
			res.latencies = append(res.latencies, time.Duration(s.latUS)*time.Microsecond)
			switch {
			case s.status == http.StatusAccepted:
				res.Accepted++
				res.AckedIDs[s.n] = true
			case s.status == http.StatusOK && s.dup:
				res.Duplicate++
				res.AckedIDs[s.n] = true
			case s.status == http.StatusOK:
				// the baseline answers plain 200
			default:
				res.Failed++
			}
		}
	}
	slices.Sort(res.latencies)
	if e, ok := firstErr.Load().(error); ok && res.Failed > 0 {
		return res, fmt.Errorf("%d requests failed, first: %w", res.Failed, e)
	}
	return res, nil
}

func post(ctx context.Context, c *http.Client, url string, body []byte) (int, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp.StatusCode, false, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return resp.StatusCode, resp.Header.Get("Switchboard-Duplicate") == "true", nil
}

// eventBody builds a JSON body of about size bytes for event id, with the
// send time so the sink can measure end-to-end lag.
func eventBody(id int64, size int) []byte {
	b := make([]byte, 0, size+64)
	b = append(b, `{"id":"e`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `","sent_ns":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"email":"lead`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `@example.com","first_name":"Ann","phone":"+15550100","notes":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}
