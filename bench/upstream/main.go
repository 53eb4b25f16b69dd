// Command upstream is the benchmark backend of bench/proxy.sh: it answers every request with a
// fixed body, names itself in X-Upstream and counts what it served (GET /__count, not counted),
// so the script can check the split the proxy really applied.
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18181", "listen address (loopback only)")
	name := flag.String("name", "stable", "value of the X-Upstream header")
	size := flag.Int("size", 64, "response body size in bytes")
	flag.Parse()
	body := bytes.Repeat([]byte("x"), *size)
	clen := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}
	self := []string{*name}
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/__count" {
			w.Write([]byte(strconv.FormatInt(served.Load(), 10) + "\n"))
			return
		}
		served.Add(1)
		hd := w.Header()
		hd["Content-Type"], hd["Content-Length"], hd["X-Upstream"] = ctype, clen, self
		w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
