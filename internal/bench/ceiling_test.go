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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAppendLogIsDurableBeforeAnswering: every body answered 202 is in the
// file, whole, when its answer comes, whatever the batches were.
func TestAppendLogIsDurableBeforeAnswering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "append.log")
	l, err := newAppendLog(path)
	require.NoError(t, err)
	defer l.close()

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			body := []byte(`{"id":"e` + strconv.Itoa(i) + `"}`)
			rec := httptest.NewRecorder()
			l.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
			assert.Equal(t, http.StatusAccepted, rec.Code)
			data, err := os.ReadFile(path)
			assert.NoError(t, err)
			assert.Contains(t, string(data), string(body)+"\n", "answered before it was written")
		})
	}
	wg.Wait()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 50, bytes.Count(data, []byte("\n")))
}
