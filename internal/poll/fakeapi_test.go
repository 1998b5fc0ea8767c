package poll_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// job is one record of the fake API.
type job struct {
	ID        int    `json:"id"`
	Status    string `json:"status"`
	UpdatedAt string `json:"updated_at"`
}

// fakeAPI serves GET /api/jobs: the jobs updated at or after ?since=,
// ordered by (updated_at, id), in pages of pageSize in one of the five
// paging styles. Tests change jobs between polls and plant failures.
type fakeAPI struct {
	t        testing.TB
	srv      *httptest.Server
	style    string
	pageSize int

	mu   sync.Mutex
	jobs map[int]job
	// fail answers status (with Retry-After retryAfter when set) to
	// failTimes requests in a row, from the failPage-th request after
	// failOn (1-based): a failure planted on a run's third page hits its
	// third request and the retries of it.
	failPage, failStatus, failTimes int
	sinceFail                       int
	retryAfter                      string
	requests                        []string
	at                              []time.Time
	// before, when set, runs before the n-th request (1-based) is
	// answered, with the jobs to change (the lock is held).
	before func(n int, jobs map[int]job)
}

func newFakeAPI(t testing.TB, style string, pageSize int) *fakeAPI {
	a := &fakeAPI{t: t, style: style, pageSize: pageSize, jobs: map[int]job{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// at is a timestamp s seconds into 2026, in the API's format.
func at(s int) string {
	return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC).Format(time.RFC3339)
}

func (a *fakeAPI) put(jobs ...job) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, j := range jobs {
		a.jobs[j.ID] = j
	}
}

func (a *fakeAPI) failOn(page, status, times int, retryAfter string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failPage, a.failStatus, a.failTimes, a.retryAfter, a.sinceFail = page, status, times, retryAfter, 0
}

func (a *fakeAPI) log() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// times returns when each request arrived.
func (a *fakeAPI) times() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at)
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, r.URL.RequestURI())
	if a.before != nil {
		a.before(len(a.requests), a.jobs)
	}
	a.at = append(a.at, time.Now())
	if r.URL.Path != "/api/jobs" {
		http.Error(w, "no such path", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	since := q.Get("since")
	var list []job
	for _, j := range a.jobs {
		if j.UpdatedAt >= since {
			list = append(list, j)
		}
	}
	slices.SortFunc(list, func(x, y job) int {
		if c := strings.Compare(x.UpdatedAt, y.UpdatedAt); c != 0 {
			return c
		}
		return x.ID - y.ID
	})
	// start is the index of the page's first record; pageNo is 1-based.
	start := 0
	switch a.style {
	case "token":
		if tok := q.Get("page_token"); tok != "" {
			b, _ := base64.RawURLEncoding.DecodeString(tok)
			start, _ = strconv.Atoi(string(b))
		}
	case "page":
		n, _ := strconv.Atoi(q.Get("page"))
		size, _ := strconv.Atoi(q.Get("per_page"))
		if size != a.pageSize {
			http.Error(w, "per_page missing", http.StatusBadRequest)
			return
		}
		start = (n - 1) * a.pageSize
	case "offset":
		start, _ = strconv.Atoi(q.Get("offset"))
		if q.Get("limit") != strconv.Itoa(a.pageSize) {
			http.Error(w, "limit missing", http.StatusBadRequest)
			return
		}
	case "link":
		start, _ = strconv.Atoi(q.Get("from"))
	case "has_more":
		if after := q.Get("starting_after"); after != "" {
			id, _ := strconv.Atoi(after)
			start = slices.IndexFunc(list, func(j job) bool { return j.ID == id }) + 1
		}
	case "none":
		start = 0
	}
	a.sinceFail++
	if a.failTimes > 0 && a.sinceFail >= a.failPage {
		a.failTimes--
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		http.Error(w, "planted failure", a.failStatus)
		return
	}
	end := min(start+a.pageSize, len(list))
	if a.style == "none" {
		end = len(list)
	}
	pageJobs := []job{}
	if start < len(list) {
		pageJobs = list[start:end]
	}
	more := end < len(list)
	body := map[string]any{"jobs": pageJobs}
	switch a.style {
	case "token":
		body["next"] = nil
		if more {
			body["next"] = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
		}
	case "link":
		if more {
			next := fmt.Sprintf("%s/api/jobs?since=%s&from=%d", a.srv.URL, since, end)
			w.Header().Set("Link", fmt.Sprintf(`<%s/api/jobs?from=0>; rel="first", <%s>; rel="next"`, a.srv.URL, next))
		}
	case "has_more":
		body = map[string]any{"data": pageJobs, "has_more": more}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// paginate returns the config of the API's paging style.
func (a *fakeAPI) paginate() string {
	switch a.style {
	case "token":
		return `paginate: { next: .next, param: page_token }`
	case "page":
		return fmt.Sprintf(`paginate: { page: page, size: %d, size_param: per_page }`, a.pageSize)
	case "offset":
		return fmt.Sprintf(`paginate: { offset: offset, limit: %d, limit_param: limit }`, a.pageSize)
	case "link":
		return `paginate: { link: next }`
	case "has_more":
		return `paginate: { has_more: .has_more, after: starting_after }`
	}
	return ""
}

// items is the jq of the API's records.
func (a *fakeAPI) items() string {
	if a.style == "has_more" {
		return ".data[]"
	}
	return ".jobs[]"
}
