// Package tui is canaryctl's interactive rollout monitor (canaryctl watch, run --tui, demo --tui): a
// bubbletea Model whose View is a pure function of the model, fed by snapshots of the rollout's state
// directory through a channel, acting on the rollout through an injected Controller (the same control
// path as canaryctl pause/resume/promote/abort).
package tui

import (
	"context"
	"fmt"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/canaryctl/canaryctl/rollout"
)

// Controller sends a control request to the rollout and says what came of it. In canaryctl it is the
// function behind canaryctl pause/resume/promote/abort.
type Controller interface {
	Control(ctx context.Context, action rollout.Action) (note string, err error)
}

// ControllerFunc adapts a function to Controller.
type ControllerFunc func(ctx context.Context, action rollout.Action) (string, error)

// Control calls f.
func (f ControllerFunc) Control(ctx context.Context, a rollout.Action) (string, error) {
	return f(ctx, a)
}

// Config configures a Model.
type Config struct {
	// Service is shown until the first snapshot arrives.
	Service string
	// Spec, when known (spec.yaml in the state directory), gives step durations, metric units, the
	// thresholds and the pause timeout; without it the screen shows what state.json holds.
	Spec *rollout.Spec
	// Updates delivers snapshots (see Poll); required.
	Updates <-chan Snapshot
	// Control performs the key actions; nil disables them.
	Control Controller
	// Ctx bounds control calls (default context.Background()).
	Ctx context.Context
	// Now is the clock (default time.Now); tests inject a fixed one.
	Now func() time.Time
	// Tick is how often the clock in the header advances (default 1s; negative: never, for tests).
	Tick time.Duration
	// Renderer styles the screen; use one with termenv.Ascii for NO_COLOR (default: lipgloss's).
	Renderer *lipgloss.Renderer
	// Title names the mode in the header, e.g. "watch" or "demo".
	Title string
	// ExitOnDone: the monitor quits when it receives Done (run --tui, demo --tui); otherwise it stays
	// on the final screen until q.
	ExitOnDone bool
}

// Done tells the monitor that the process running the rollout finished it (run --tui, demo --tui).
type Done struct{ Err error }

type snapshotMsg Snapshot
type updatesClosedMsg struct{}
type tickMsg time.Time
type controlDoneMsg struct {
	action rollout.Action
	note   string
	err    error
}

// mode is what the keyboard does.
type mode int

const (
	modeNormal mode = iota
	modeConfirm
	modeHelp
)

// Model is the monitor. It implements tea.Model; View depends only on the model's fields.
type Model struct {
	cfg    Config
	keys   KeyMap
	help   help.Model
	st     styles
	width  int
	height int
	now    time.Time

	snap    Snapshot
	haveSt  bool
	mode    mode
	confirm rollout.Action
	// busy: a control request is in flight; status: the last message for the status line.
	busy   rollout.Action
	status string
	// Quit reasons, for the caller after Run.
	quitByUser  bool
	interrupted bool
	done        bool
}

// New builds a Model.
func New(cfg Config) Model {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tick == 0 {
		cfg.Tick = time.Second
	}
	if cfg.Ctx == nil {
		cfg.Ctx = context.Background()
	}
	if cfg.Renderer == nil {
		cfg.Renderer = lipgloss.DefaultRenderer()
	}
	if cfg.Title == "" {
		cfg.Title = "watch"
	}
	st := newStyles(cfg.Renderer)
	h := help.New()
	h.Styles = st.help
	h.ShortSeparator = " · "
	return Model{cfg: cfg, keys: DefaultKeyMap(), help: h, st: st, width: 80, height: 24, now: cfg.Now()}
}

// QuitByUser reports whether the user left the monitor (q) before the rollout ended.
func (m Model) QuitByUser() bool { return m.quitByUser }

// Interrupted reports whether the user pressed ctrl+c (run --tui treats it like SIGINT).
func (m Model) Interrupted() bool { return m.interrupted }

// State is the last state seen (nil before the first snapshot).
func (m Model) State() *rollout.State { return m.snap.State }

// Init starts reading snapshots and the clock.
func (m Model) Init() tea.Cmd {
	return tea.Batch(m.waitUpdate(), m.tick())
}

func (m Model) waitUpdate() tea.Cmd {
	ch := m.cfg.Updates
	if ch == nil {
		return nil
	}
	return func() tea.Msg {
		s, ok := <-ch
		if !ok {
			return updatesClosedMsg{}
		}
		return snapshotMsg(s)
	}
}

func (m Model) tick() tea.Cmd {
	if m.cfg.Tick < 0 {
		return nil
	}
	return tea.Tick(m.cfg.Tick, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// WithSnapshot returns the model showing s, as if the poller had just delivered it (the final frame
// printed after the monitor quit).
func (m Model) WithSnapshot(s Snapshot) Model {
	next, _ := m.Update(snapshotMsg(s))
	return next.(Model)
}

// Update handles keys, window sizes, snapshots, clock ticks and control results.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.Width = msg.Width
		return m, nil
	case snapshotMsg:
		m.snap = Snapshot(msg)
		m.haveSt = m.snap.State != nil
		m.now = m.cfg.Now()
		return m, m.waitUpdate()
	case updatesClosedMsg:
		return m, nil
	case tickMsg:
		m.now = m.cfg.Now()
		return m, m.tick()
	case controlDoneMsg:
		m.busy = ""
		switch {
		case msg.note != "":
			m.status = oneLine(msg.note)
		case msg.err != nil:
			m.status = fmt.Sprintf("%s: %s", msg.action, oneLine(msg.err.Error()))
		default:
			m.status = fmt.Sprintf("%s sent", msg.action)
		}
		return m, nil
	case Done:
		m.done = true
		if msg.Err != nil {
			m.status = oneLine(msg.Err.Error())
		}
		if m.cfg.ExitOnDone {
			return m, tea.Quit
		}
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.String() == "ctrl+c" {
		m.interrupted = true
		m.quitByUser = true
		return m, tea.Quit
	}
	switch m.mode {
	case modeConfirm:
		switch {
		case key.Matches(k, m.keys.Confirm):
			m.mode = modeNormal
			return m.send(m.confirm)
		case key.Matches(k, m.keys.Cancel), key.Matches(k, m.keys.Quit):
			m.mode = modeNormal
			m.status = fmt.Sprintf("%s cancelled", m.confirm)
			return m, nil
		}
		return m, nil
	case modeHelp:
		if key.Matches(k, m.keys.Quit) && k.String() == "q" {
			m.quitByUser = true
			return m, tea.Quit
		}
		m.mode = modeNormal
		return m, nil
	}
	switch {
	case key.Matches(k, m.keys.Quit):
		m.quitByUser = true
		return m, tea.Quit
	case key.Matches(k, m.keys.Help):
		m.mode = modeHelp
		return m, nil
	case key.Matches(k, m.keys.Pause):
		return m.send(rollout.ActionPause)
	case key.Matches(k, m.keys.Resume):
		return m.send(rollout.ActionResume)
	case key.Matches(k, m.keys.Promote):
		return m.ask(rollout.ActionPromote)
	case key.Matches(k, m.keys.Abort):
		return m.ask(rollout.ActionAbort)
	}
	return m, nil
}

// ended reports whether the rollout is over (nothing left to control).
func (m Model) ended() bool { return m.snap.State != nil && m.snap.State.Phase.Terminal() }

func (m Model) ask(a rollout.Action) (tea.Model, tea.Cmd) {
	if msg := m.refuse(a); msg != "" {
		m.status = msg
		return m, nil
	}
	m.mode = modeConfirm
	m.confirm = a
	return m, nil
}

// refuse says why an action cannot be sent now ("" when it can).
func (m Model) refuse(a rollout.Action) string {
	switch {
	case m.cfg.Control == nil:
		return "controls are off in this monitor"
	case m.ended():
		return fmt.Sprintf("%s: the rollout already ended %s", a, m.snap.State.Phase)
	case m.busy != "":
		return fmt.Sprintf("%s: waiting for the %s request to be applied", a, m.busy)
	}
	return ""
}

func (m Model) send(a rollout.Action) (tea.Model, tea.Cmd) {
	if msg := m.refuse(a); msg != "" {
		m.status = msg
		return m, nil
	}
	m.busy = a
	m.status = fmt.Sprintf("%s requested; waiting for the rollout to apply it…", a)
	ctl, ctx := m.cfg.Control, m.cfg.Ctx
	return m, func() tea.Msg {
		note, err := ctl.Control(ctx, a)
		return controlDoneMsg{action: a, note: note, err: err}
	}
}

var oneLine = rollout.OneLine
