package bench

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func deliver(t *testing.T, s *sink, key string, id int64) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(eventBody(id, 200)))
	req.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w.Code
}

// TestSinkCountsByKey is what makes the bench fail loudly: an
// acknowledged event never delivered is lost, a key applied twice a
// duplicate.
func TestSinkCountsByKey(t *testing.T) {
	t.Parallel()
	s := newSink(0)
	k1, k2 := "sb_"+string(bytes.Repeat([]byte("ab"), 20)), "sb_"+string(bytes.Repeat([]byte("cd"), 20))
	require.Equal(t, http.StatusOK, deliver(t, s, k1, 1))
	require.Equal(t, http.StatusOK, deliver(t, s, k2, 2))
	lost, dups := s.check(map[int64]bool{1: true, 2: true, 3: true}, 1)
	require.Equal(t, 1, lost, "event 3 was acknowledged and never delivered")
	require.Zero(t, dups)

	require.Equal(t, http.StatusOK, deliver(t, s, k1, 1))
	_, dups = s.check(nil, 1)
	require.Equal(t, 1, dups, "the same key applied twice")

	// Keys that are not Switchboard's are told apart too.
	require.Equal(t, http.StatusOK, deliver(t, s, "other-1", 4))
	require.Equal(t, http.StatusOK, deliver(t, s, "other-2", 5))
	_, dups = s.check(nil, 1)
	require.Equal(t, 1, dups)
	require.Equal(t, 4, s.effectCount())
}

func TestSinkFailsFirstAttempts(t *testing.T) {
	t.Parallel()
	s := newSink(100)
	key := "sb_" + string(bytes.Repeat([]byte("0f"), 20))
	require.Equal(t, http.StatusServiceUnavailable, deliver(t, s, key, 1), "first attempt")
	require.Equal(t, http.StatusOK, deliver(t, s, key, 1), "the retry")
	lost, dups := s.check(map[int64]bool{1: true}, 1)
	require.Zero(t, lost)
	require.Zero(t, dups, "a refused attempt is not an effect")
}
