package bench

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAppendLogIsDurableBeforeAnswering: every body answered 202 is in the
// file, whole, when its answer comes, whatever the batches were.
func TestAppendLogIsDurableBeforeAnswering(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "append.log")
	l, err := newAppendLog(path)
	require.NoError(t, err)
	defer l.close()

	problems := make(chan string, 50)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			body := []byte(`{"id":"e` + strconv.Itoa(i) + `"}`)
			rec := httptest.NewRecorder()
			l.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
			data, err := os.ReadFile(path)
			switch {
			case rec.Code != http.StatusAccepted:
				problems <- string(body) + ": answered " + strconv.Itoa(rec.Code)
			case err != nil:
				problems <- err.Error()
			case !bytes.Contains(data, append(body, '\n')):
				problems <- string(body) + ": answered before it was written"
			}
		})
	}
	wg.Wait()
	close(problems)
	var all []string
	for p := range problems {
		all = append(all, p)
	}
	require.Empty(t, all)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, data, appendRegion, "written in place, round the region allocated first")
	require.Equal(t, 50, bytes.Count(data, []byte("\n")))
}

// TestCeilingsAnswerAfterClose: a handler still running when its ceiling
// was closed (the server's shutdown gave up waiting for it) answers 503;
// it does not send on a closed channel and bring the bench down.
func TestCeilingsAnswerAfterClose(t *testing.T) {
	t.Parallel()
	l, err := newAppendLog(filepath.Join(t.TempDir(), "append.log"))
	require.NoError(t, err)
	l.close()
	r := newRelay(t.Context(), "http://127.0.0.1:9/", 2)
	r.close()
	for _, h := range []http.Handler{l, r} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte(`{"id":"e1"}`))))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	}
	require.Zero(t, r.pending.Load())
}
