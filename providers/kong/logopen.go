package kong

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// DefaultLogSecretEnv is read for a manual plugin's secret when log.secretEnv is not set.
const DefaultLogSecretEnv = "CANARYCTL_KONG_LOG_SECRET"

// openLogReceiver starts the kong-log receiver with the rollout's secret and, with log.tls, https.
func openLogReceiver(cfg OpenConfig, ls *LogSpec) (*LogReceiver, error) {
	secret, err := logSecret(cfg, ls)
	if err != nil {
		return nil, err
	}
	lc := LogConfig{Addr: ls.Listen, Secret: secret, Logger: cfg.Logger}
	if ls.Flush > 0 {
		lc.Lag = ls.Flush + 250*time.Millisecond
	}
	if ls.TLS != nil {
		lc.CertFile, lc.KeyFile = ls.TLS.CertFile, ls.TLS.KeyFile
	}
	if sp := cfg.Spec; sp != nil {
		// the client key is what Kong hashes on: the sequential tests judge sticky cohorts by it
		var on, header string
		switch sp.Mode {
		case ModeHash:
			on, header = sp.HashOn, sp.HashOnHeader
		case ModeCanaryPlugin:
			on, header = sp.CanaryHash, sp.CanaryHashHeader
		}
		switch on {
		case "header":
			lc.ClientHeader = strings.ToLower(header)
		case "cookie":
			lc.ClientCookie = sp.HashOnCookie
		case "ip":
			lc.ClientIP = true
		}
	}
	return NewLogReceiver(lc)
}

// logSecret picks the secret: log.secretFile, log.secretEnv (or CANARYCTL_KONG_LOG_SECRET for a
// manual plugin), else the rollout's own (OpenConfig.LogSecret), else a new random one.
func logSecret(cfg OpenConfig, ls *LogSpec) (string, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	switch {
	case ls.SecretFile != "" && ls.SecretEnv != "":
		return "", &ConfigError{Field: "log.secretEnv", Msg: "set either log.secretFile or log.secretEnv, not both"}
	case ls.SecretFile != "":
		b, err := os.ReadFile(ls.SecretFile)
		if err != nil {
			return "", &ConfigError{Field: "log.secretFile", Msg: fmt.Sprintf("cannot read %q: %v", ls.SecretFile, errors.Unwrap(err))}
		}
		s := strings.TrimSpace(string(b))
		if !validSecret(s) {
			return "", &ConfigError{Field: "log.secretFile", Msg: fmt.Sprintf("%q must hold 16 to 256 printable ASCII characters without spaces; e.g. openssl rand -hex 32 > %s", ls.SecretFile, ls.SecretFile)}
		}
		return s, nil
	case ls.SecretEnv != "":
		s := strings.TrimSpace(getenv(ls.SecretEnv))
		if !validSecret(s) {
			return "", &ConfigError{Field: "log.secretEnv", Msg: fmt.Sprintf("$%s must hold 16 to 256 printable ASCII characters without spaces; e.g. export %s=$(openssl rand -hex 32)", ls.SecretEnv, ls.SecretEnv)}
		}
		return s, nil
	case ls.Manual && getenv(DefaultLogSecretEnv) != "":
		s := strings.TrimSpace(getenv(DefaultLogSecretEnv))
		if !validSecret(s) {
			return "", &ConfigError{Field: "log.secretEnv", Msg: fmt.Sprintf("$%s must hold 16 to 256 printable ASCII characters without spaces", DefaultLogSecretEnv)}
		}
		return s, nil
	}
	return cfg.LogSecret, nil
}

// tellManual tells the owner of a manual http-log plugin which header to add, naming where the
// secret is, never the secret itself (logs end up in CI output).
func tellManual(cfg OpenConfig, ls *LogSpec, rec *LogReceiver) {
	if cfg.Logger == nil {
		return
	}
	where := "the secret canaryctl generated for this rollout"
	switch {
	case ls.SecretFile != "":
		where = "the contents of " + ls.SecretFile
	case ls.SecretEnv != "":
		where = "$" + ls.SecretEnv
	case cfg.Getenv != nil && cfg.Getenv(DefaultLogSecretEnv) != "":
		where = "$" + DefaultLogSecretEnv
	case cfg.LogSecretPath != "":
		where = "the contents of " + cfg.LogSecretPath
	}
	cfg.Logger.Warn(fmt.Sprintf("kong-log: log.manual: add config.headers {Authorization: \"Bearer <%s>\"} to your http-log plugin posting to %s "+
		"(the header values are Kong vault-referenceable: {vault://env/VAR} with VAR holding the whole \"Bearer ...\" value keeps the secret out of your config); "+
		"posts without it are answered 401 and left out of the analysis", where, rec.URL()))
}

// problems validates the log section as NewLogReceiver would, without reading files.
func (ls *LogSpec) problems() []*ConfigError {
	var out []*ConfigError
	if ls.TLS != nil && (ls.TLS.CertFile == "" || ls.TLS.KeyFile == "") {
		out = append(out, &ConfigError{Field: "log.tls", Msg: "set both certFile and keyFile (PEM) for an https receiver"})
	}
	if ls.SecretFile != "" && ls.SecretEnv != "" {
		out = append(out, &ConfigError{Field: "log.secretEnv", Msg: "set either log.secretFile or log.secretEnv, not both"})
	}
	if ls.TLS != nil && ls.Endpoint != "" && strings.HasPrefix(ls.Endpoint, "http://") {
		out = append(out, &ConfigError{Field: "log.endpoint", Msg: fmt.Sprintf("%q is http, but log.tls makes the receiver serve https; use https://", ls.Endpoint)})
	}
	return out
}
