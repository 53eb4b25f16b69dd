package kong

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// OpenConfig is what Open needs besides the spec.
type OpenConfig struct {
	Spec *Spec
	// RolloutID tags the entities of the rollout; use something stable across `run --resume`
	// (the service name), so a resumed run adopts what the first one created.
	RolloutID string
	// WithLog starts the kong-log receiver (metrics.type: kong-log).
	WithLog bool
	Getenv  func(string) string
	Logger  *slog.Logger
	// LogSecret is the rollout's kong-log secret, kept in its state (the same across run --resume);
	// empty: a random one for this run. gateway.kong.log.secretFile/secretEnv take precedence.
	LogSecret string
	// LogSecretPath is where LogSecret is kept, named in the message to a manual plugin's owner.
	LogSecretPath string
}

// Opened is a Router, with the kong-log receiver when asked for.
type Opened struct {
	Router *Router
	Log    *LogReceiver // nil without WithLog
}

// Close stops the receiver.
func (o *Opened) Close() {
	if o.Log != nil {
		_ = o.Log.Close()
	}
}

// Open builds the Kong gateway (and the kong-log receiver) of a rollout spec, and checks the Admin
// API, the Service and the Upstream before anything is deployed.
func Open(ctx context.Context, cfg OpenConfig) (*Opened, error) {
	if cfg.Spec == nil {
		return nil, &ConfigError{Field: "(section)", Msg: "required for gateway.type kong; e.g. kong: {admin: http://127.0.0.1:8001, service: web}"}
	}
	id := strings.NewReplacer(",", "-", "/", "-").Replace(cfg.RolloutID)
	rc := cfg.Spec.Config(id, cfg.Getenv, cfg.Logger)
	if rc.Token == "" && cfg.Spec.TokenFile == "" && cfg.Spec.TokenEnv != "" {
		return nil, &ConfigError{Field: "tokenEnv", Msg: fmt.Sprintf("$%s is empty; export the Kong-Admin-Token there", cfg.Spec.TokenEnv)}
	}
	o := &Opened{}
	if cfg.WithLog {
		ls := cfg.Spec.Log
		if ls == nil {
			ls = &LogSpec{}
		}
		rec, err := openLogReceiver(cfg, ls)
		if err != nil {
			return nil, err
		}
		o.Log = rec
		rc.Log = rec
		rc.LogFlush = ls.Flush
		if !ls.Manual {
			rc.LogEndpoint = ls.Endpoint
			if rc.LogEndpoint == "" {
				rc.LogEndpoint = rec.URL()
			}
		} else {
			tellManual(cfg, ls, rec)
		}
	}
	r, err := New(rc)
	if err != nil {
		o.Close()
		return nil, err
	}
	if err := r.Preflight(ctx); err != nil {
		o.Close()
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, &ConfigError{Field: "service", Msg: err.Error()}
	}
	o.Router = r
	return o, nil
}
