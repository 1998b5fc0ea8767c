package bench

import (
	"crypto/sha256"
	"encoding/hex"
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
	keys      map[keyID]keyCount
	ids       map[int64]int // effects per event id (one per flow and step)
	total     int           // effects in all
	lags      []time.Duration
	last      time.Time
	duplicate int
}

func newSink(failPercent float64) *sink {
	return &sink{failPercent: failPercent, keys: map[keyID]keyCount{}, ids: map[int64]int{}}
}

// keyID is an Idempotency-Key in 20 bytes: the sink holds one per delivery,
// and the bench's peak RSS, which is meant to show the node's, counts them.
type keyID [20]byte

// keyCount is what the sink saw of one key: attempts, and 2xx answers.
type keyCount struct{ attempts, effects uint32 }

// idOf packs a key: Switchboard's are "sb_" and 40 hex digits; any other
// is hashed.
func idOf(key string) keyID {
	var id keyID
	if hexed, ok := strings.CutPrefix(key, "sb_"); ok && len(hexed) == 2*len(id) {
		if _, err := hex.Decode(id[:], []byte(hexed)); err == nil {
			return id
		}
	}
	sum := sha256.Sum256([]byte(key))
	copy(id[:], sum[:])
	return id
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(r.Body)
	var ev struct {
		ID   string `json:"id"`
		Sent int64  `json:"sent"`    // the flow's step maps sent_ns to sent
		Raw  int64  `json:"sent_ns"` // the relay ceiling posts the event as sent
	}
	_ = json.Unmarshal(body, &ev)
	if ev.Sent == 0 {
		ev.Sent = ev.Raw
	}
	key := r.Header.Get("Idempotency-Key")
	id := idOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.keys[id]
	c.attempts++
	if c.attempts == 1 && s.fails(key) {
		s.keys[id] = c
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	c.effects++
	s.keys[id] = c
	if c.effects > 1 {
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

// report sets p's delivery figures: lost and duplicated events, events
// delivered by every flow and step, and their rate from start to the last
// delivery, and the lag percentiles.
func (s *sink) report(p *Phase, acked map[int64]bool, perEvent int, start time.Time) {
	p.Lost, p.Duplicates = s.check(acked, perEvent)
	p.Delivered = len(acked) - p.Lost
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if elapsed := last.Sub(start).Seconds(); elapsed > 0 {
		p.DeliveredPS = float64(p.Delivered) / elapsed
	}
	p.LagP50ms, p.LagP99ms = ms(s.lagPercentile(50)), ms(s.lagPercentile(99))
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
