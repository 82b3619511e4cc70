package daemon

import (
	"net/http"
	"time"

	"github.com/berth-dev/berth/internal/api"
)

// Settings of the API's HTTP server, sized for thousands of agents that
// each hold one long-lived, mostly idle HTTP/2 connection.
const (
	// apiIdleTimeout closes connections without a request in flight (an
	// HTTP/1.1 keep-alive connection, an HTTP/2 one without streams):
	// each idle one costs a goroutine, TLS state and buffers. An agent's
	// watch stream keeps its connection busy.
	apiIdleTimeout = 2 * time.Minute
	// apiHeaderTableSize caps the HPACK table the server encodes response
	// headers with. The default 4 KiB fills with a Date value per second
	// and stays allocated per connection; responses carry a few headers,
	// so compression gains little from a bigger table. (The decoder's
	// table, which clients encode requests with, stays at the default:
	// a client may use it before it has read the server's settings.)
	apiHeaderTableSize = 256
	// apiPingAfter: a connection that sent nothing for this long is
	// pinged, and closed if the ping goes unanswered for apiPingTimeout,
	// so a vanished agent's connection and watch do not linger. Agents
	// send heartbeats far more often.
	apiPingAfter   = time.Minute
	apiPingTimeout = 30 * time.Second
)

// newAPIServer is the http.Server of the API (berth server and berth up)
// around h; callers add TLS and a base context. Its Shutdown also ends
// the agents' sessions, which it does not otherwise know of.
func newAPIServer(h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: apiIdleTimeout,
		HTTP2: &http.HTTP2Config{MaxEncoderHeaderTableSize: apiHeaderTableSize,
			SendPingTimeout: apiPingAfter, PingTimeout: apiPingTimeout}}
	if a, ok := h.(*api.Server); ok {
		srv.RegisterOnShutdown(a.CloseSessions)
	}
	return srv
}
