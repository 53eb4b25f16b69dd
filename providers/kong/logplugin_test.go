package kong

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestLogPluginHeadersKong2: Kong 2.x's http-log takes an array of strings per header
// (typedefs.headers) and answers the 3.x string with a schema violation on config.headers; the
// plugin is then created with the 2.x shape, carrying the same secret.
func TestLogPluginHeadersKong2(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var shapes []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Config struct {
				Headers map[string]any `json:"headers"`
			} `json:"config"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		if _, isString := body.Config.Headers["Authorization"].(string); isString {
			shapes = append(shapes, "string")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":2,"name":"schema violation","message":"schema violation (config.headers.Authorization: expected an array)","fields":{"config":{"headers":{"Authorization":"expected an array"}}}}`))
			return
		}
		v, _ := body.Config.Headers["Authorization"].([]any)
		if len(v) != 1 || v[0] != "Bearer "+testSecret {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		shapes = append(shapes, "array")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"p1","name":"http-log"}`))
	}))
	t.Cleanup(admin.Close)
	rec := newTestReceiver(t, LogConfig{})
	r, err := New(Config{AdminURL: admin.URL, Service: "web", RolloutID: "r1", Log: rec, LogEndpoint: rec.URL(), Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	r.st.serviceID = "s1"
	var p pluginAnswer
	body := map[string]any{"name": "http-log", "config": map[string]any{"http_endpoint": rec.URL(), "headers": r.logHeaders(false)}}
	if err := r.postLogPlugin(t.Context(), body, &p); err != nil || p.ID != "p1" {
		t.Fatalf("post the plugin: %v (id %q)", err, p.ID)
	}
	if len(shapes) != 2 || shapes[0] != "string" || shapes[1] != "array" {
		t.Fatalf("header shapes sent %v, want the 3.x string then the 2.x array", shapes)
	}
}
