package httpcall

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/switchboard-dev/switchboard/internal/connector"
	"github.com/switchboard-dev/switchboard/internal/connector/webapi"
)

// Fetch reads one page for a poll source: a GET of req.Path under the base
// URL with the system's headers and auth. A non-2xx answer is classified as
// a request's would be (Retry-After honoured); so is an answer larger than
// connector.MaxFetchBody, permanently, because a cut page would lose records.
func (s *system) Fetch(ctx context.Context, req connector.FetchRequest) (connector.FetchResponse, error) {
	in := input{method: http.MethodGet, path: req.Path, query: req.Query}
	a := &requestAction{sys: s}
	display := "GET " + req.Path
	resp, token, err := a.send(ctx, in, "")
	if err != nil {
		return connector.FetchResponse{}, err
	}
	if resp.StatusCode == http.StatusUnauthorized && s.oauth != nil {
		webapi.Discard(resp)
		s.oauth.invalidate(ctx, token)
		if resp, token, err = a.send(ctx, in, ""); err != nil {
			return connector.FetchResponse{}, err
		}
	}
	out := connector.FetchResponse{URL: resp.Request.URL, Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res, _, _ := webapi.ReadResponse(resp)
		out.Body = res.Body
		return out, s.statusError(display, token, resp, res.Body)
	}
	defer webapi.Discard(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, connector.MaxFetchBody+1))
	if err != nil {
		return out, s.transportError(ctx, display+": read response", token, err)
	}
	if len(body) > connector.MaxFetchBody {
		return out, connector.Permanent(fmt.Errorf("%s: answer larger than %d bytes; ask for smaller pages", display, connector.MaxFetchBody))
	}
	out.Body = body
	return out, nil
}
