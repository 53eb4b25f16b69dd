package kongtest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Try is one balancer attempt of a proxied request (ctx.balancer_data.tries in kong/init.lua).
type Try struct {
	IP     string
	Port   int
	Start  time.Time
	Failed bool // the connection failed: Kong logs state "failed" and code 502 and tries the next target
}

// LogInput is what the log phase knows about one proxied request.
type LogInput struct {
	Method, Host, URI string // the client's request line and Host
	Query             map[string]any
	RequestHeaders    http.Header
	RequestSize       int
	UpstreamURI       string
	Status            int
	ResponseHeaders   http.Header
	ResponseSize      int
	Started           time.Time     // when Kong read the first byte of the request
	Request           time.Duration // latencies.request: first byte in to last byte out
	Proxy             time.Duration // latencies.proxy: the upstream's time; negative: no upstream answered
	Tries             []Try
	ClientIP          string
	Service, Route    map[string]any // the entities as stored (Kong copies them into the entry)
	RequestID         string
}

// LogEntry builds the http-log entry Kong 3.x serializes for a request (kong/pdk/log.lua
// serialize(): request with its headers, upstream_uri, upstream_status, response with its headers,
// latencies, tries, route, service, client_ip, started_at, source, workspace). Kong redacts the
// client's Authorization and Proxy-Authorization headers; header names are lower-case and repeated
// headers are joined.
func LogEntry(in LogInput) map[string]any {
	reqHeaders := flatHeaders(in.RequestHeaders)
	for _, h := range []string{"authorization", "proxy-authorization"} {
		if _, ok := reqHeaders[h]; ok {
			reqHeaders[h] = "REDACTED"
		}
	}
	query := in.Query
	if query == nil {
		query = map[string]any{}
	}
	proxy := int64(-1)
	if in.Proxy >= 0 {
		proxy = in.Proxy.Milliseconds()
	}
	request := in.Request.Milliseconds()
	kong := request
	if proxy >= 0 {
		kong = request - proxy
	}
	tries := make([]map[string]any, 0, len(in.Tries))
	for _, t := range in.Tries {
		try := map[string]any{
			"balancer_start": t.Start.UnixMilli(), "balancer_start_ns": t.Start.UnixNano(),
			"balancer_latency": 0, "balancer_latency_ns": 25000, "ip": t.IP, "port": t.Port,
		}
		if t.Failed {
			try["state"], try["code"] = "failed", http.StatusBadGateway
		}
		tries = append(tries, try)
	}
	upstreamStatus, source := "", "kong"
	if proxy >= 0 {
		upstreamStatus, source = strconv.Itoa(in.Status), "upstream"
	}
	host := in.Host
	if !strings.Contains(host, ":") {
		host += ":80"
	}
	e := map[string]any{
		"request": map[string]any{
			"id": in.RequestID, "method": in.Method, "uri": in.URI, "url": "http://" + host + in.URI,
			"size": in.RequestSize, "querystring": query, "headers": reqHeaders,
		},
		"upstream_uri":    in.UpstreamURI,
		"upstream_status": upstreamStatus,
		"response": map[string]any{
			"status": in.Status, "size": in.ResponseSize, "headers": flatHeaders(in.ResponseHeaders),
		},
		"latencies":      map[string]any{"request": request, "kong": kong, "proxy": proxy, "receive": 0},
		"tries":          tries,
		"client_ip":      in.ClientIP,
		"started_at":     in.Started.UnixMilli(),
		"source":         source,
		"workspace":      "0dc6f45b-8f8d-40d2-a504-473544ee190b",
		"workspace_name": "default",
	}
	if in.Service != nil {
		e["service"] = in.Service
	}
	if in.Route != nil {
		e["route"] = in.Route
	}
	return e
}
