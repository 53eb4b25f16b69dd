package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/canaryctl/canaryctl/providers/kong"
	"github.com/canaryctl/canaryctl/rollout"
)

// kongLogSecretFile holds the rollout's kong-log secret in its state directory (mode 0600), so that
// run --resume keeps the header Kong's http-log plugin sends. It is never printed or logged.
const kongLogSecretFile = "kong-log.secret"

// kongLogSecret returns the rollout's kong-log secret and where it is kept: a new one for a fresh
// rollout, otherwise the one kept in the state directory (made if missing).
func kongLogSecret(store rollout.StateStore, fresh bool) (secret, path string, err error) {
	path = filepath.Join(store.Dir(), kongLogSecretFile)
	if !fresh {
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b)), path, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("read the rollout's kong-log secret: %w", err)
		}
	}
	if secret, err = kong.NewLogSecret(); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(store.Dir(), 0o700); err != nil {
		return "", "", fmt.Errorf("keep the rollout's kong-log secret: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("keep the rollout's kong-log secret: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", "", fmt.Errorf("keep the rollout's kong-log secret: %w", err)
	}
	return secret, path, nil
}
