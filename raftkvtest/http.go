package raftkvtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// ErrorCode returns error.code of an error body, or "".
func (r Response) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

var httpClient = &http.Client{Timeout: 15 * time.Second}

// Do sends one request to a node and returns its answer. A transport error
// is returned as Status 0 with the error text as Body.
func Do(method, addr, path string, body []byte, header map[string]string) Response {
	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return Response{Body: []byte(err.Error())}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return Response{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// KeyPath returns /v1/kv/<escaped key>.
func KeyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

// Put writes key=value through the node at addr.
func Put(addr, key, value string) Response {
	return Do(http.MethodPut, addr, KeyPath(key), []byte(value), nil)
}

// Get reads key through the node at addr (linearizable).
func Get(addr, key string) Response {
	return Do(http.MethodGet, addr, KeyPath(key), nil, nil)
}
