package testenv

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// HTTPFaults is a reverse proxy in front of an AWS emulator that can drop
// connections or answer a share of requests with a throttling error, the
// way DynamoDB does when a table's capacity is exceeded.
type HTTPFaults struct {
	srv   *http.Server
	addr  string
	mu    sync.Mutex
	down  bool
	share float64 // of requests throttled

	Throttled atomic.Int64 // requests answered with a throttling error
}

// NewHTTPFaults proxies to upstream (an http:// URL) until the test ends.
func NewHTTPFaults(t testing.TB, upstream string) *HTTPFaults {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &HTTPFaults{addr: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		down, share := h.down, h.share
		h.mu.Unlock()
		switch {
		case down:
			// Drop the connection without an answer.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
		case share > 0 && rand.Float64() < share:
			_, _ = io.Copy(io.Discard, r.Body)
			h.Throttled.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}`)
		default:
			rp.ServeHTTP(w, r)
		}
	})}
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() { _ = h.srv.Close() })
	return h
}

// URL is the proxy's endpoint URL.
func (h *HTTPFaults) URL() string { return "http://" + h.addr }

// SetDown drops every request while down is true.
func (h *HTTPFaults) SetDown(down bool) {
	h.mu.Lock()
	h.down = down
	h.mu.Unlock()
}

// Throttle answers this share of requests (0..1) with a throttling error.
func (h *HTTPFaults) Throttle(share float64) {
	h.mu.Lock()
	h.share = share
	h.mu.Unlock()
}
