package proxy

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// AdminHeader is a header canaryctl's admin client sends on every call. A web page cannot add a
// custom header to a cross-site request without a CORS preflight, which the admin API never
// approves, so a write that carries it (or a JSON Content-Type, for the same reason) was not
// made by a form or a simple fetch on some other site.
const AdminHeader = "X-Canaryctl-Admin"

// refuseCrossSite refuses, before the token is checked, what a browser sends to the admin API
// on behalf of a web page:
//
//   - a request a page on another origin made: a foreign Origin (any method; the API serves no
//     pages, so no origin but its own may call it) or Sec-Fetch-Site other than same-origin/none;
//   - with checkHost (no token: --admin-insecure, loopback only), a Host that is not a loopback
//     address, the listener's own address or localhost. A DNS-rebinding page is same-origin
//     with itself, so Origin and custom headers pass; only its own name in Host gives it away.
//     With a token the page cannot authenticate, so Host is left free for names such as a
//     Kubernetes Service.
//
// net/http's CrossOriginProtection checks only writes, by design; reads are refused here too
// because /v1/requests and /v1/state describe who is routed where.
func refuseCrossSite(next http.Handler, checkHost bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if checkHost {
			if err := checkAdminHost(r); err != nil {
				writeError(w, http.StatusForbidden, kindForbidden, err)
				return
			}
		}
		if err := checkSameOrigin(r); err != nil {
			writeError(w, http.StatusForbidden, kindForbidden, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseSimpleWrites refuses a write (any method but GET, HEAD, OPTIONS) without
// Content-Type: application/json or AdminHeader. A form POST or a text/plain fetch is a "simple"
// request: a browser sends it cross-site without a preflight, and an old browser may omit
// Origin; neither can carry a JSON Content-Type or a custom header without one.
func refuseSimpleWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !jsonContentType(r.Header.Get("Content-Type")) && r.Header.Get(AdminHeader) == "" {
				writeError(w, http.StatusUnsupportedMediaType, kindMediaType, fmt.Errorf(
					"admin API: %s %s needs Content-Type: application/json or the header %s: 1 (canaryctl's client sends it; with curl add -H 'Content-Type: application/json'); a web form can send neither, which is how cross-site writes are refused",
					r.Method, r.URL.Path, AdminHeader))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func jsonContentType(v string) bool {
	if v == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && mt == "application/json"
}

// checkSameOrigin refuses a request a browser made for a page of another origin.
func checkSameOrigin(r *http.Request) error {
	switch v := r.Header.Get("Sec-Fetch-Site"); v {
	case "", "same-origin", "none":
	default:
		return fmt.Errorf("admin API: cross-site request refused (Sec-Fetch-Site: %s): the admin API is for canaryctl and curl, not for web pages", v)
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("admin API: cross-site request refused: Origin %q is not this listener (%s); the admin API is for canaryctl and curl, not for web pages", o, r.Host)
	}
	return nil
}

var errNoHost = errors.New("no Host header")

// checkAdminHost accepts a Host naming the listener: an IP literal that is loopback or the
// address the connection arrived on, or localhost. The port is not compared, so a forwarded
// port (ssh -L, kubectl port-forward) keeps working.
func checkAdminHost(r *http.Request) error {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	ok, err := adminHostOK(r.Host, local)
	if ok {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("%q is neither a loopback address nor localhost", r.Host)
	}
	at := "127.0.0.1:PORT"
	if local != nil {
		at = local.String()
	}
	return fmt.Errorf("admin API: Host refused without a token (--admin-insecure): %w; call it as http://%s or http://localhost:PORT (another name is how a DNS-rebinding web page reaches a loopback API)", err, at)
}

func adminHostOK(host string, local net.Addr) (bool, error) {
	if host == "" {
		return false, errNoHost
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	if strings.EqualFold(name, "localhost") {
		return true, nil
	}
	a, err := netip.ParseAddr(name)
	if err != nil {
		return false, nil
	}
	if a.Unmap().IsLoopback() {
		return true, nil
	}
	if tcp, ok := local.(*net.TCPAddr); ok {
		if l, ok := netip.AddrFromSlice(tcp.IP); ok && l.Unmap() == a.Unmap() {
			return true, nil
		}
	}
	return false, nil
}
