package e2e

import (
	"io"
	"net/http"
	"time"
)

var client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}

// httpGet returns the status of a GET.
func httpGet(url string) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
