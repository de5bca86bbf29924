package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/internal/errcode"
	"github.com/raftkv/raftkv/internal/httpbody"
)

// Defaults for the options below.
const (
	DefaultDialTimeout = 2 * time.Second
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
	// maxServerTimeout is the largest ?timeout= the server accepts.
	maxServerTimeout = 5 * time.Minute
)

// Client talks to a raftkv cluster over HTTP. It is safe for concurrent use
// and reuses connections; create one per process and share it.
type Client struct {
	endpoints []string // normalized base URLs ("http://host:port"); never changes
	scheme    string   // given to endpoints without one: "http", or "https" with WithTLS
	hc        *http.Client
	timeout   time.Duration // per-call deadline; 0 means only the caller's ctx
	userAgent string
	// userAgentHeader is userAgent as a header value, made once: shared by
	// every request, which net/http only reads.
	userAgentHeader []string
	token           string  // bearer token sent with every call ("" none)
	router          *router // nil unless WithLeaderRouting
	// idemRetry bounds the resends of a write whose outcome is unknown
	// (idempotency.go); honoured is set once an answer echoed a key.
	idemRetry time.Duration
	honoured  atomic.Bool

	// preferred is the index into endpoints of the endpoint that answered
	// last. Each call starts there.
	preferred atomic.Uint32
}

// Option configures a Client.
type Option func(*options)

type options struct {
	timeout       time.Duration
	dialTimeout   time.Duration
	httpClient    *http.Client
	userAgent     string
	token         string
	tls           *tls.Config
	leaderRouting bool
	idemRetry     time.Duration
	idemRetrySet  bool
}

// WithToken sends token as "Authorization: Bearer <token>" with every call,
// for a cluster that runs with --auth.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTimeout sets a deadline for each call (all its attempts together),
// in addition to any deadline on the caller's context. The server is told
// about the deadline (the timeout query parameter) so that it gives up a
// little earlier and answers with a timeout error. Zero, the default, means
// the caller's context alone bounds the call.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDialTimeout bounds how long connecting to one endpoint may take before
// the next endpoint is tried. Default DefaultDialTimeout. Ignored with
// WithHTTPClient.
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithHTTPClient makes the client use hc instead of its own http.Client
// (for TLS settings or instrumentation). hc should not have an overall
// Timeout set, since joins may legitimately take a while; use WithTimeout.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.httpClient = hc } }

// WithTLS makes the client speak HTTPS with cfg: it verifies the servers
// (cfg.RootCAs, or the system's roots when nil) and presents cfg's
// certificate to a server that requires one. An endpoint given as bare
// "host:port" then means "https://host:port"; one written "http://..."
// stays plaintext. Ignored with WithHTTPClient, whose transport carries its
// own TLS settings.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// New returns a client for the given endpoints. An endpoint is "host:port"
// or a URL such as "http://host:port" or "https://host:port"; "host:port"
// means plain HTTP unless WithTLS is given. Empty entries are ignored; a
// client without endpoints fails every call with ErrNoEndpoints.
func New(endpoints []string, opts ...Option) *Client {
	o := options{dialTimeout: DefaultDialTimeout, userAgent: "raftkv-client"}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{timeout: o.timeout, userAgent: o.userAgent, userAgentHeader: []string{o.userAgent}, hc: o.httpClient, scheme: "http", token: o.token,
		idemRetry: DefaultIdempotentRetry}
	if o.idemRetrySet {
		c.idemRetry = max(o.idemRetry, 0)
	}
	if o.tls != nil {
		c.scheme = "https"
	}
	if o.leaderRouting {
		c.router = &router{leaders: map[string]string{}}
	}
	for _, ep := range endpoints {
		if ep = normalizeEndpoint(ep, c.scheme); ep != "" {
			c.endpoints = append(c.endpoints, ep)
		}
	}
	if c.hc == nil {
		c.hc = newHTTPClient(o.dialTimeout, o.tls)
	}
	return c
}

func newHTTPClient(dialTimeout time.Duration, tlsConfig *tls.Config) *http.Client {
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	tr := &http.Transport{
		// Cluster nodes are addressed directly; environment proxies are
		// not consulted.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		TLSClientConfig:       tlsConfig,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr}
}

// normalizeEndpoint turns "host:port" into "scheme://host:port" and strips a
// trailing slash.
func normalizeEndpoint(ep, scheme string) string {
	ep = strings.TrimSpace(ep)
	if ep == "" {
		return ""
	}
	if !strings.Contains(ep, "://") {
		ep = scheme + "://" + ep
	}
	return strings.TrimRight(ep, "/")
}

// Endpoints returns the normalized endpoint URLs, in order.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// At returns a client that talks only to endpoint, sharing this client's
// connections and options. Use it to address one particular node, for
// example to probe it with Live.
func (c *Client) At(endpoint string) *Client {
	// The copy keeps no router: it is for addressing one node on purpose.
	n := &Client{hc: c.hc, timeout: c.timeout, userAgent: c.userAgent, userAgentHeader: c.userAgentHeader, scheme: c.scheme, token: c.token, idemRetry: c.idemRetry}
	if ep := normalizeEndpoint(endpoint, c.scheme); ep != "" {
		n.endpoints = []string{ep}
	}
	return n
}

// request describes one API call independently of the endpoint it goes to.
type request struct {
	method string
	path   string // escaped path, starting with "/"
	query  url.Values
	header http.Header
	body   []byte
	// write marks a request that changes state: once delivered it is not
	// resent, and a failure after delivery is indeterminate.
	write bool
	// idempotent writes (join, leave) may be resent to another endpoint.
	idempotent bool
	// noDeadlineHint skips the timeout query parameter (health probes).
	noDeadlineHint bool
	// key, when set, is the key a key request is about: with leader
	// routing the request goes to its shard's leader first.
	key string
	// sink, when set, consumes the body of a 2xx answer from the endpoint
	// base (node, its X-Raftkv-Node) as it streams in (a backup) instead
	// of the body being read into memory. An error it returns ends the
	// call as it is: the answer was partly consumed, so no other endpoint
	// is tried.
	sink func(base, node string, body io.Reader) error
	// nextOnBusy sends a read to the next endpoint when one answers 429
	// overloaded or 503 unavailable, which say that nothing was done: for
	// requests each node serves on its own (a backup it stages).
	nextOnBusy bool
}

func (r *request) op() string { return r.method + " " + r.path }

// response is a successful (2xx) answer.
type response struct {
	status   int
	header   http.Header
	body     []byte
	node     string
	endpoint string // base URL of the endpoint that answered
	method   string // the request's method and path, for errors (op)
	path     string
	write    bool // the request was a write
}

// op names the request this answers, as request.op does; it is built
// only when an error needs it.
func (r *response) op() string { return r.method + " " + r.path }

// sinkError carries the error of a request's sink: the call ends with err.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// do sends r to the preferred endpoint and fails over to the others while
// that is safe. A non-2xx answer is returned as *APIError.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	if len(c.endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	if c.timeout > 0 {
		// A caller's deadline that comes first already bounds the call;
		// a timer of our own would never fire first.
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > c.timeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.timeout)
			defer cancel()
		}
	}
	routed := c.router != nil && r.key != ""
	if routed {
		if lead := c.leaderURL(ctx, r.key); lead != "" {
			resp, delivered, err := c.attempt(ctx, lead, r)
			var apiErr *APIError
			var se *sinkError
			switch {
			case err == nil:
				c.learn(resp.header)
				return resp, nil
			case errors.As(err, &se):
				return nil, se.err
			case errors.As(err, &apiErr):
				return c.answered(ctx, r, lead, apiErr)
			case delivered && r.write && !r.idempotent, ctx.Err() != nil:
				return nil, &RequestError{Op: r.op(), Endpoint: lead, Err: err, Sent: delivered,
					Timeout: errors.Is(ctx.Err(), context.DeadlineExceeded), Indeterminate: delivered && r.write}
			}
			if !delivered {
				// The leader it knew is gone, or its address cannot be
				// reached from here (a client behind a load balancer):
				// stop trying it for a while. Any endpoint will forward,
				// and its answer names the new leader.
				c.markDown(lead)
			}
		}
	}
	n := len(c.endpoints)
	start := int(c.preferred.Load()) % n
	var causes []error
	var busy error // the last "try later" answer of a nextOnBusy request, or a removed node's
	sent := false  // some attempt may have reached a server
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		ep := c.endpoints[idx]
		resp, delivered, err := c.attempt(ctx, ep, r)
		var se *sinkError
		if errors.As(err, &se) {
			c.preferred.Store(uint32(idx))
			return nil, se.err
		}
		sent = sent || delivered
		if err == nil {
			c.preferred.Store(uint32(idx))
			if c.router != nil && r.key != "" {
				c.learn(resp.header)
			}
			return resp, nil
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			if errors.Is(err, ErrRemoved) && ctx.Err() == nil {
				// That node left the cluster and did nothing: another
				// endpoint may still be a member.
				busy = err
				continue
			}
			// The node answered; it is reachable even if it said no.
			c.preferred.Store(uint32(idx))
			if routed {
				return c.answered(ctx, r, ep, apiErr)
			}
			if r.nextOnBusy && !r.write && (errors.Is(err, ErrOverloaded) || errors.Is(err, ErrUnavailable)) && ctx.Err() == nil {
				busy = err
				continue
			}
			return nil, err
		}
		indeterminate := delivered && r.write && !r.idempotent
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, &RequestError{
				Op: r.op(), Endpoint: ep, Err: err, Sent: sent,
				Timeout:       errors.Is(ctxErr, context.DeadlineExceeded),
				Indeterminate: delivered && r.write,
			}
		}
		if indeterminate {
			return nil, &RequestError{Op: r.op(), Endpoint: ep, Sent: true, Indeterminate: true, Err: err}
		}
		causes = append(causes, err)
	}
	if busy != nil {
		return nil, busy
	}
	return nil, &RequestError{Op: r.op(), Endpoint: c.endpoints[(start+n-1)%n], Sent: sent, Err: joinedErrors(causes)}
}

// joinedErrors is several causes on one line, one per endpoint tried.
type joinedErrors []error

func (e joinedErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e joinedErrors) Unwrap() []error { return e }

// attempt sends r to one endpoint. delivered reports whether any part of
// the request may have reached the server: it is false only when the
// failure happened before the request headers were written on the
// connection that failed (a dial error). This is the one place that
// decides whether a request was sent.
func (c *Client) attempt(ctx context.Context, base string, r request) (resp *response, delivered bool, err error) {
	// net/http may resend a request on a fresh connection by itself when
	// a reused one broke, and it does so even after the request was
	// written when the request is "replayable", which a write carrying an
	// Idempotency-Key is. So once any try wrote the request it stays
	// delivered: if the resend then finds the node gone (connection
	// refused), the first send may still have been applied.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	u := base + r.path
	q, timeout := r.query, ""
	if !r.noDeadlineHint {
		if dl, ok := ctx.Deadline(); ok {
			// Ask the server to give up slightly before we do, so a slow
			// request ends with its timeout answer rather than a cut
			// connection.
			hint := time.Until(dl) * 9 / 10
			if hint > maxServerTimeout {
				hint = maxServerTimeout
			}
			if hint >= time.Millisecond {
				timeout = hint.Round(time.Millisecond).String()
			}
		}
	}
	switch {
	case len(q) == 0 && timeout != "":
		// Most requests carry only the deadline: a duration such as
		// 9.5s needs no escaping, and building it directly spares the
		// copy and sort of a url.Values per request.
		u += "?timeout=" + timeout
	case timeout != "":
		q = cloneValues(q)
		q.Set("timeout", timeout)
		fallthrough
	case len(q) > 0:
		u += "?" + q.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, false, err
	}
	for k, vs := range r.header {
		hreq.Header[k] = vs
	}
	if c.userAgent != "" {
		hreq.Header["User-Agent"] = c.userAgentHeader
	}
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		// Name the endpoint instead of the whole URL, which repeats the
		// path and query already in RequestError.Op.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = fmt.Errorf("%s: %w", base, urlErr.Err)
		}
		return nil, wrote.Load(), err
	}
	defer hresp.Body.Close()
	node := hresp.Header.Get("X-Raftkv-Node")
	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
		apiErr := decodeAPIError(hresp.StatusCode, data, node, r.write)
		apiErr.header = hresp.Header
		if secs, perr := strconv.Atoi(hresp.Header.Get("Retry-After")); perr == nil && secs > 0 {
			apiErr.RetryAfter = time.Duration(secs) * time.Second
		}
		apiErr.Leader, apiErr.LeaderAddr = hresp.Header.Get(headerLeader), hresp.Header.Get(headerLeaderAddr)
		apiErr.Index, _ = strconv.ParseUint(hresp.Header.Get("X-Raftkv-Index"), 10, 64)
		if hresp.StatusCode == http.StatusPreconditionFailed {
			apiErr.CurrentRevision = parseETag(hresp.Header.Get("ETag"))
		}
		return nil, true, apiErr
	}
	out := &response{status: hresp.StatusCode, header: hresp.Header, node: node, endpoint: base, method: r.method, path: r.path, write: r.write}
	if r.sink != nil {
		if err := r.sink(base, node, hresp.Body); err != nil {
			return nil, true, &sinkError{err}
		}
		return out, true, nil
	}
	declared := hresp.ContentLength
	if r.method == http.MethodHead {
		declared = -1 // an answer to HEAD declares a length it does not send
	}
	if out.body, err = httpbody.Read(hresp.Body, declared, 64<<10); err != nil {
		return nil, true, fmt.Errorf("reading the answer: %w", err)
	}
	return out, true, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+1)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// decodeAPIError builds an *APIError from an error answer, and decides
// whether a write it answers may have happened: a 5xx may hide an applied
// write, except a raftkv error body whose code promises that nothing was
// done (503 unavailable). A 5xx without raftkv's body (a proxy's) promises
// nothing.
func decodeAPIError(status int, body []byte, node string, write bool) *APIError {
	e := &APIError{Status: status, Node: node, Indeterminate: write && status >= 500}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		if info, ok := errcode.Lookup(e.Code); ok && info.RetryAfter && info.Status == status {
			e.Indeterminate = false
		}
		return e
	}
	e.Code = codeForStatus(status)
	e.Message = http.StatusText(status)
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		e.Message += ": " + s
	}
	return e
}

// decodeJSON unmarshals a success body. A body that does not decode is a
// *RequestError with the answer's status; for a write it is indeterminate:
// the write happened, but what it did (which branch of a transaction ran,
// the new revision) is unknown.
func decodeJSON(resp *response, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return &RequestError{Op: resp.op(), Endpoint: resp.endpoint, Sent: true, Indeterminate: resp.write,
			Status: resp.status, Err: fmt.Errorf("decoding the answer of node %q: %w", resp.node, err)}
	}
	return nil
}

// Live reports whether the endpoint answers GET /livez with 200. On a
// client with several endpoints it succeeds if any does; use At to probe one
// node.
func (c *Client) Live(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/livez", noDeadlineHint: true})
	return err
}

// Ready reports whether the endpoint answers GET /readyz with 200: every
// group has a leader and the node is a member of all of them.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/readyz", noDeadlineHint: true})
	return err
}
