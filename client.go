package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/go-kit/kit/endpoint"
)

// maxUpstreamBody bounds what the proxy reads of an instance's answer.
const maxUpstreamBody = 1 << 20

// byteBuffers recycles the bodies of upstream requests and of responses.
var byteBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// makeUpstreamEndpoint returns an endpoint that POSTs an uppercaseRequest
// through hc. Transport failures, 5xx and 429 come back as errors (retried,
// counted by the breaker); an answer the instance gave on purpose comes
// back inside the response, neither retried nor a breaker failure: ErrEmpty
// (our 400 or stringsvc3's 200 {"err":"empty string"}) reaches the client
// as 400, any other 4xx as 502.
func makeUpstreamEndpoint(hc *hostClient) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req := request.(uppercaseRequest)
		buf := byteBuffers.Get().(*[]byte)
		defer byteBuffers.Put(buf)
		body := append((*buf)[:0], `{"s":`...)
		body = append(appendJSONString(body, req.S), '}')
		*buf = body
		var response any
		err := hc.post(ctx, body, func(status int, answer []byte) error {
			var err error
			response, err = decodeUpstreamAnswer(status, answer)
			return err
		})
		return response, err
	}
}

// decodeUpstreamAnswer sorts an instance's answer into a result, a business
// error or a failure.
func decodeUpstreamAnswer(status int, body []byte) (any, error) {
	var resp uppercaseResponse
	var jsonErr error
	if v, ok := decodeStringField(body, "v"); ok {
		resp.V = v
	} else {
		jsonErr = json.Unmarshal(body, &resp)
	}
	switch {
	case jsonErr == nil && resp.Err == ErrEmpty.Error() &&
		(status == http.StatusOK || status == http.StatusBadRequest):
		return uppercaseResponse{err: ErrEmpty}, nil
	case status >= 500 || status == http.StatusTooManyRequests:
		return nil, fmt.Errorf("upstream answered %d", status)
	case status != http.StatusOK:
		return uppercaseResponse{err: fmt.Errorf("%w: instance refused the request: %d %q",
			errUpstream, status, resp.Err)}, nil
	case jsonErr != nil:
		return nil, fmt.Errorf("decode upstream answer: %w", jsonErr)
	case resp.Err != "":
		return uppercaseResponse{err: fmt.Errorf("%w: instance answered %q", errUpstream, resp.Err)}, nil
	}
	return uppercaseResponse{V: resp.V}, nil
}
