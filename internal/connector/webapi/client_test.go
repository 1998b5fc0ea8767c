package webapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewClient(t *testing.T) {
	t.Parallel()

	c := NewClient(7 * time.Second)
	require.Equal(t, 7*time.Second, c.Timeout)
	tr, ok := c.Transport.(*http.Transport)
	require.True(t, ok)
	require.NotSame(t, http.DefaultTransport, tr, "each system has its own transport")
	require.Equal(t, maxIdleConnsPerHost, tr.MaxIdleConnsPerHost)
	require.Zero(t, tr.MaxIdleConns)
}

func TestNewClientReportsRedirects(t *testing.T) {
	t.Parallel()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("redirect was followed")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	resp, err := NewClient(time.Second).Get(srv.URL + "/start")
	require.NoError(t, err)
	Discard(resp)
	require.Equal(t, http.StatusFound, resp.StatusCode)
}
