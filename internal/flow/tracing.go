package flow

import (
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/switchboard-dev/switchboard/internal/config"
)

// tracing checks the tracing: section. Everything in it is optional; what
// is written must make sense.
func (cp *compiler) tracing(t *config.Tracing) *config.Tracing {
	if t == nil {
		return nil
	}
	if t.OTLPEndpoint != "" {
		if u, err := url.Parse(t.OTLPEndpoint); err != nil || !absoluteHTTP(u) {
			cp.errorf(cp.node("tracing.otlp_endpoint"), "tracing.otlp_endpoint",
				"must be an absolute http or https URL such as http://collector:4318 (OTLP over HTTP)")
		}
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		cp.errorf(cp.node("tracing.sample_ratio"), "tracing.sample_ratio", "must be between 0 and 1")
	}
	for _, name := range slices.Sorted(maps.Keys(t.Headers)) {
		if !validHeaderName(name) {
			cp.errorf(cp.node("tracing.headers"), "tracing.headers", "%q is not a valid HTTP header name", name)
		}
	}
	return t
}

// validHeaderName reports whether name is an HTTP token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c > 0x7e || c <= ' ' || slices.Contains([]rune(`"(),/:;<=>?@[\]{}`), c) {
			return false
		}
	}
	return http.CanonicalHeaderKey(name) != ""
}
