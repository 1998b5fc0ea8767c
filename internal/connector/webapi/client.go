package webapi

import (
	"net/http"
	"time"
)

// maxIdleConnsPerHost is far above net/http's default of 2: a system is one
// host, and many delivery workers call it at once. It must cover the worker
// count: a connection that cannot go back to the idle pool is closed, and
// the next call pays for a new TCP (and TLS) handshake. Idle connections
// still close after IdleConnTimeout (90 s).
const maxIdleConnsPerHost = 1024

// NewClient returns the HTTP client of one system: its own transport (a
// clone of http.DefaultTransport, so proxies from the environment apply)
// with room for every delivery worker's idle connection, and the given
// overall timeout per request. Redirects are not followed but reported as
// the 3xx answer, so a call never silently lands on another host or path
// and credentials never travel there. Requests whose context holds a span
// (a step attempt's, when tracing is on) carry its traceparent.
func NewClient(timeout time.Duration) *http.Client {
	transport := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = dt.Clone()
	}
	transport.MaxIdleConnsPerHost = maxIdleConnsPerHost
	transport.MaxIdleConns = 0 // no cap across hosts: each system has its own transport
	return &http.Client{
		Transport:     traceTransport{next: transport},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
