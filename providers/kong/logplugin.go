package kong

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/canaryctl/canaryctl/providers/kong/internal/schemaerr"
)

// logHeaders is the http-log plugin's config.headers carrying the receiver's secret. Kong 3.x
// (kong/plugins/http-log/schema.lua) maps each header name to one string; Kong 2.x
// (typedefs.headers) to an array of strings (legacy).
func (r *Router) logHeaders(legacy bool) map[string]any {
	if r.cfg.Log == nil {
		return map[string]any{}
	}
	v := r.cfg.Log.authorization()
	if legacy {
		return map[string]any{"Authorization": []string{v}}
	}
	return map[string]any{"Authorization": v}
}

// postLogPlugin creates the http-log plugin; when Kong rejects the 3.x shape of config.headers
// (Kong 2.x wants an array per header), it tries once more with the 2.x shape.
func (r *Router) postLogPlugin(ctx context.Context, body map[string]any, out *pluginAnswer) error {
	path := "/services/" + r.st.serviceID + "/plugins"
	err := r.call(ctx, http.MethodPost, path, nil, body, out)
	if !headersRejected(err) {
		return err
	}
	body["config"].(map[string]any)["headers"] = r.logHeaders(true)
	return r.call(ctx, http.MethodPost, path, nil, body, out)
}

// updateLogPlugin gives an http-log plugin an earlier run of this rollout left behind this run's
// endpoint and secret (the old secret died with the old receiver).
func (r *Router) updateLogPlugin(ctx context.Context, id string) error {
	cfg := map[string]any{"http_endpoint": r.cfg.LogEndpoint, "headers": r.logHeaders(false)}
	err := r.call(ctx, http.MethodPatch, "/plugins/"+id, nil, map[string]any{"config": cfg}, nil)
	if headersRejected(err) {
		cfg["headers"] = r.logHeaders(true)
		err = r.call(ctx, http.MethodPatch, "/plugins/"+id, nil, map[string]any{"config": cfg}, nil)
	}
	if err != nil {
		return fmt.Errorf("kong: give the http-log plugin of service %q this run's endpoint and secret: %w", r.cfg.Service, err)
	}
	r.log.Info("kong http-log plugin of an earlier run updated", "service", r.cfg.Service, "endpoint", r.cfg.LogEndpoint)
	return nil
}

// headersRejected reports a 400 schema violation naming config.headers.
func headersRejected(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return false
	}
	for _, p := range schemaerr.Parts(ae.Fields) {
		if strings.HasPrefix(p, "config.headers") {
			return true
		}
	}
	return false
}
