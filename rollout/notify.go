package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"slices"
	"time"

	"github.com/canaryctl/canaryctl/providers"
)

// Notification is the JSON payload posted to webhooks. Text is Slack-compatible (a Slack incoming
// webhook shows it); the other fields are for machines.
type Notification struct {
	Text    string          `json:"text"`
	Event   string          `json:"event"` // started, paused, promoted, rolledBack, failed
	Service string          `json:"service"`
	RunID   string          `json:"runId"`
	Phase   Phase           `json:"phase"`
	Step    int             `json:"step"` // index from 0
	Steps   int             `json:"steps"`
	Split   providers.Split `json:"split"`
	Verdict Verdict         `json:"verdict,omitempty"`
	Score   *Number         `json:"score,omitempty"`
	Reason  string          `json:"reason,omitempty"`
}

func (n Notification) text() string {
	icon := map[string]string{EventStarted: ":rocket:", EventPaused: ":pause_button:", EventPromoted: ":white_check_mark:",
		EventRolledBack: ":rewind:", EventFailed: ":rotating_light:"}[n.Event]
	s := fmt.Sprintf("%s canaryctl: %s %s", icon, n.Service, map[string]string{EventStarted: "rollout started",
		EventPaused: "rollout paused", EventPromoted: "canary promoted", EventRolledBack: "canary rolled back, all traffic on stable",
		EventFailed: "rollback FAILED, check the gateway"}[n.Event])
	if n.Score != nil {
		s += fmt.Sprintf(" (score %s)", fmtScore(float64(*n.Score)))
	}
	if n.Reason != "" {
		s += ": " + n.Reason
	}
	return s
}

// WebhookConfig configures a WebhookNotifier.
type WebhookConfig struct {
	Webhooks []WebhookSpec
	Timeout  time.Duration // per call; default 5s
	Client   *http.Client  // default: a client with no shared state
}

// WebhookNotifier posts notifications to webhooks.
type WebhookNotifier struct{ cfg WebhookConfig }

// NewWebhookNotifier builds a notifier.
func NewWebhookNotifier(cfg WebhookConfig) *WebhookNotifier {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultNotifyTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	return &WebhookNotifier{cfg: cfg}
}

// Notify posts n to every webhook subscribed to its event; it returns every failure joined.
func (w *WebhookNotifier) Notify(ctx context.Context, n Notification) error {
	body, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	var errs []error
	for _, h := range w.cfg.Webhooks {
		if !subscribed(h, n.Event) {
			continue
		}
		if err := w.post(ctx, h.URL, body); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func subscribed(h WebhookSpec, event string) bool {
	if len(h.On) == 0 {
		return event != EventStarted
	}
	return slices.Contains(h.On, event)
}

func (w *WebhookNotifier) post(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: build request: %w", redact(url), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL itself may hold a secret
		}
		return fmt.Errorf("webhook %s: %w", redact(url), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s: answered %s", redact(url), resp.Status)
	}
	return nil
}

// redact keeps the scheme and host of a webhook URL: its path is often a secret (Slack).
func redact(u string) string {
	for i := 0; i+3 <= len(u); i++ {
		if u[i:i+3] == "://" {
			rest := u[i+3:]
			for j := 0; j < len(rest); j++ {
				if rest[j] == '/' {
					return u[:i+3+j] + "/…"
				}
			}
			return u
		}
	}
	return "(webhook)"
}

func writeEventLine(w io.Writer, ev *Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = w.Write(append(line, '\n'))
	return err
}
