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
