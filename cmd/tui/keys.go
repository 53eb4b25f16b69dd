package tui

import "github.com/charmbracelet/bubbles/key"

// KeyMap holds the monitor's key bindings as data: Update matches against them and the help renders
// from them, so the two cannot drift apart.
type KeyMap struct {
	Pause   key.Binding
	Resume  key.Binding
	Promote key.Binding
	Abort   key.Binding
	Help    key.Binding
	Quit    key.Binding
	// Confirm and Cancel answer the question asked before promote and abort.
	Confirm key.Binding
	Cancel  key.Binding
}

// DefaultKeyMap is the monitor's key map: p pause, r resume, P promote, a abort, ? help, q quit.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Pause:   key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause")),
		Resume:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "resume")),
		Promote: key.NewBinding(key.WithKeys("P"), key.WithHelp("P", "promote")),
		Abort:   key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "abort/roll back")),
		Help:    key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:    key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit monitor")),
		Confirm: key.NewBinding(key.WithKeys("y", "Y"), key.WithHelp("y", "yes")),
		Cancel:  key.NewBinding(key.WithKeys("n", "N", "esc"), key.WithHelp("n/esc", "no")),
	}
}

// ShortHelp is the one-line key help (help.KeyMap).
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Pause, k.Resume, k.Promote, k.Abort, k.Help, k.Quit}
}

// FullHelp is the full help shown by ? (help.KeyMap).
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Pause, k.Resume, k.Promote},
		{k.Abort, k.Help, k.Quit},
		{k.Confirm, k.Cancel},
	}
}

// confirmKeys is the help line while a question is asked.
type confirmKeys struct{ k KeyMap }

func (c confirmKeys) ShortHelp() []key.Binding  { return []key.Binding{c.k.Confirm, c.k.Cancel} }
func (c confirmKeys) FullHelp() [][]key.Binding { return [][]key.Binding{c.ShortHelp()} }
