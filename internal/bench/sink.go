package bench

import (
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sink is the downstream of the end-to-end phase: it counts deliveries by
// Idempotency-Key, as an API honouring the key would apply them, and can
// fail a share of first attempts with 503 to exercise retries.
type sink struct {
	failPercent float64

	mu        sync.Mutex // guards the fields below
	attempts  map[string]int
	effects   map[string]int // 2xx answers per key
	ids       map[int64]int  // effects per event id (one per flow and step)
	total     int            // effects in all
	lags      []time.Duration
	last      time.Time
	duplicate int
}

func newSink(failPercent float64) *sink {
	return &sink{failPercent: failPercent, attempts: map[string]int{}, effects: map[string]int{}, ids: map[int64]int{}}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(r.Body)
	var ev struct {
		ID   string `json:"id"`
		Sent int64  `json:"sent"`
	}
	_ = json.Unmarshal(body, &ev)
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[key]++
	if s.attempts[key] == 1 && s.fails(key) {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.effects[key]++
	if s.effects[key] > 1 {
		s.duplicate++
	} else {
		id, _ := strconv.ParseInt(strings.TrimPrefix(ev.ID, "e"), 10, 64)
		s.ids[id]++
		s.total++
		s.lags = append(s.lags, now.Sub(time.Unix(0, ev.Sent)))
		s.last = now
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

// fails decides, by key, whether the first attempt gets a 503.
func (s *sink) fails(key string) bool {
	if s.failPercent <= 0 {
		return false
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return float64(h.Sum32()%10000) < s.failPercent*100
}

// effectCount is how many deliveries were applied in all.
func (s *sink) effectCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// check reports acknowledged events not delivered by every flow and step
// (perEvent deliveries each) and keys applied twice.
func (s *sink) check(acked map[int64]bool, perEvent int) (lost, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range acked {
		if s.ids[id] < perEvent {
			lost++
		}
	}
	return lost, s.duplicate
}

func (s *sink) lagPercentile(p float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lags) == 0 {
		return 0
	}
	l := slices.Clone(s.lags)
	slices.Sort(l)
	return l[int(float64(len(l)-1)*p/100)]
}
