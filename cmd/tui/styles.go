package tui

import (
	"io"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/canaryctl/canaryctl/rollout"
)

// styles are the monitor's lipgloss styles, made from one renderer so that NO_COLOR (a renderer with
// termenv.Ascii) turns every color off at once.
type styles struct {
	plain, title, dim, bold, warn, bad, good, key, ask lipgloss.Style
	stable, baseline, canary                           lipgloss.Style
	help                                               help.Styles
}

func newStyles(r *lipgloss.Renderer) styles {
	c := func(s string) lipgloss.TerminalColor { return lipgloss.Color(s) }
	s := styles{
		plain:    r.NewStyle(),
		title:    r.NewStyle().Bold(true).Foreground(c("12")),
		dim:      r.NewStyle().Foreground(c("8")),
		bold:     r.NewStyle().Bold(true),
		warn:     r.NewStyle().Foreground(c("11")),
		bad:      r.NewStyle().Foreground(c("9")).Bold(true),
		good:     r.NewStyle().Foreground(c("10")),
		key:      r.NewStyle().Bold(true).Foreground(c("14")),
		ask:      r.NewStyle().Bold(true).Reverse(true),
		stable:   r.NewStyle().Foreground(c("8")),
		baseline: r.NewStyle().Foreground(c("12")),
		canary:   r.NewStyle().Foreground(c("11")),
	}
	s.help = help.Styles{
		ShortKey:       s.key,
		ShortDesc:      r.NewStyle(),
		ShortSeparator: s.dim,
		Ellipsis:       s.dim,
		FullKey:        s.key,
		FullDesc:       r.NewStyle(),
		FullSeparator:  s.dim,
	}
	return s
}

// NewRenderer returns a renderer for w's terminal; with noColor (NO_COLOR set) it renders no colors
// or attributes at all.
func NewRenderer(w io.Writer, noColor bool) *lipgloss.Renderer {
	r := lipgloss.NewRenderer(w)
	if noColor {
		r.SetColorProfile(termenv.Ascii)
	}
	return r
}

// PlainRenderer renders no colors (tests, golden files).
func PlainRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	return r
}

func (s styles) phase(p rollout.Phase) lipgloss.Style {
	switch p {
	case rollout.Promoted, rollout.Promoting:
		return s.good.Bold(true)
	case rollout.RollingBack, rollout.RolledBack, rollout.Failed:
		return s.bad
	case rollout.Paused:
		return s.warn.Bold(true)
	}
	return s.bold
}

func (s styles) verdict(v rollout.Verdict) lipgloss.Style {
	switch v {
	case rollout.VerdictPass:
		return s.good
	case rollout.VerdictMarginal:
		return s.warn
	case rollout.VerdictFail, rollout.VerdictError:
		return s.bad
	}
	return s.warn // verdicts without a score, e.g. "need more data"
}

func (s styles) class(c string) lipgloss.Style {
	switch c {
	case "Pass":
		return s.good
	case "High", "Low", "NodataFailMetric", "Error":
		return s.bad
	}
	return s.warn
}
