package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
)

// maxUpstreamBody bounds what the proxy reads of an instance's answer.
const maxUpstreamBody = 1 << 20

// makeUpstreamEndpoint returns an endpoint that POSTs an uppercaseRequest to
// target. Transport failures, 5xx and 429 come back as errors (retried,
// counted by the breaker); an answer the instance gave on purpose — ErrEmpty
// as our 400 or as stringsvc3's 200 {"err":"empty string"}, or another 4xx
// — comes back inside the response, so it is passed to the client as is.
func makeUpstreamEndpoint(client *http.Client, target *url.URL) endpoint.Endpoint {
	return httptransport.NewClient(http.MethodPost, target, encodeUpstreamRequest, decodeUpstreamResponse,
		httptransport.SetClient(client)).Endpoint()
}

func encodeUpstreamRequest(_ context.Context, r *http.Request, request any) error {
	body, err := json.Marshal(request)
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = int64(len(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return nil
}

// decodeUpstreamResponse reads the whole body (so the connection is reused)
// and sorts the answer into a result, a business error or a failure.
func decodeUpstreamResponse(_ context.Context, r *http.Response) (any, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxUpstreamBody))
	if err != nil {
		return nil, fmt.Errorf("read upstream answer: %w", err)
	}
	var resp uppercaseResponse
	jsonErr := json.Unmarshal(body, &resp)
	switch {
	case jsonErr == nil && resp.Err == ErrEmpty.Error() &&
		(r.StatusCode == http.StatusOK || r.StatusCode == http.StatusBadRequest):
		return uppercaseResponse{err: ErrEmpty}, nil
	case r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("upstream answered %d", r.StatusCode)
	case r.StatusCode != http.StatusOK:
		return uppercaseResponse{err: fmt.Errorf("%w: instance refused the request: %d %q",
			errUpstream, r.StatusCode, resp.Err)}, nil
	case jsonErr != nil:
		return nil, fmt.Errorf("decode upstream answer: %w", jsonErr)
	case resp.Err != "":
		return uppercaseResponse{err: fmt.Errorf("%w: instance answered %q", errUpstream, resp.Err)}, nil
	}
	return uppercaseResponse{V: resp.V}, nil
}
