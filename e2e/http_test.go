//go:build e2e

package e2e

import (
	"net/http"
	"time"
)

var client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
