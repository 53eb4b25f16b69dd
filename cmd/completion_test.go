package cmd

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample walks the whole command tree (hidden commands too) and fails on a
// command without an Example, so that --help always shows how a command is used.
func TestEveryCommandHasAnExample(t *testing.T) {
	t.Parallel()
	root := NewRootCmd(&Env{Getenv: func(string) string { return "" }})
	var missing []string
	n := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Example) == "" {
			missing = append(missing, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 15 {
		t.Fatalf("walked only %d commands; is the tree built?", n)
	}
	if len(missing) > 0 {
		t.Fatalf("commands without an Example in --help: %s", strings.Join(missing, ", "))
	}
}

func TestHelpShowsTheExample(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"completion", "bash", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, stderr := rtRun(t.Context(), nil, args...)
			if code != ExitOK || !strings.Contains(out, "Examples:\n  canaryctl ") && !strings.Contains(out, "Examples:\n  source ") {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, out, stderr)
			}
		})
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		shell, want string
	}{
		{"bash", "__start_canaryctl"},
		{"zsh", "#compdef canaryctl"},
		{"fish", "complete -c canaryctl"},
		{"powershell", "Register-ArgumentCompleter"},
	}
	for _, tc := range tests {
		t.Run(tc.shell, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := rtRun(t.Context(), nil, "completion", tc.shell)
			if code != ExitOK || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (stderr %q); script lacks %q:\n%.300s", code, stderr, tc.want, out)
			}
			// zsh and fish check the syntax when the shell is installed.
			check := map[string][]string{"zsh": {"zsh", "-n"}, "fish": {"fish", "--no-execute"}}[tc.shell]
			if check == nil {
				return
			}
			if _, err := exec.LookPath(check[0]); err != nil {
				t.Logf("%s not installed: syntax not checked", check[0])
				return
			}
			f := filepath.Join(t.TempDir(), "script")
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.CommandContext(t.Context(), check[0], append(check[1:], f)...).CombinedOutput(); err != nil {
				t.Fatalf("%s rejects the script: %v\n%s", tc.shell, err, b)
			}
		})
	}
	t.Run("no shell", func(t *testing.T) {
		t.Parallel()
		if code, _, stderr := rtRun(t.Context(), nil, "completion"); code != ExitUsage || !strings.Contains(stderr, "bash, zsh, fish") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}

// TestBashCompletionLoadsAndCompletes sources the bash script in a real bash, checks that it registers
// the completion function, and asks it for completions the way bash does (the script calls the
// binary's hidden __complete command, answered here by a shim that runs this test binary's code).
func TestBashCompletionLoadsAndCompletes(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	code, script, stderr := rtRun(t.Context(), nil, "completion", "bash")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "canaryctl.bash")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registration: complete -p prints the function bound to canaryctl.
	out, err := exec.CommandContext(t.Context(), "bash", "--norc", "--noprofile", "-c", "source "+f+" && complete -p canaryctl").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "__start_canaryctl") || !strings.Contains(string(out), "canaryctl") {
		t.Fatalf("bash did not load the script: %v\n%s", err, out)
	}
	// What the script asks the binary for, answered in process: flag values and subcommands.
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"subcommands", []string{"__complete", "ru"}, []string{"run"}},
		{"flag values", []string{"__complete", "run", "--output", ""}, []string{"text", "json"}},
		{"completion shells", []string{"__complete", "completion", ""}, []string{"bash", "zsh", "fish"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := rtRun(t.Context(), nil, tc.args...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w+"\t") && !strings.Contains(out, w+"\n") {
					t.Errorf("completions %q lack %q", out, w)
				}
			}
		})
	}
}

// TestHelperCompletionShim is not a test: it is canaryctl for the shell (see TestBashCompletesWithTheBinary).
func TestHelperCompletionShim(t *testing.T) {
	if os.Getenv("CANARYCTL_COMPLETION_SHIM") != "1" {
		t.Skip("helper process")
	}
	os.Exit(Main(flag.Args()))
}

// TestBashCompletesWithTheBinary runs real completion in bash with bash-completion: the script calls
// `canaryctl __complete ...`, here a shim that runs this test binary as canaryctl.
func TestBashCompletesWithTheBinary(t *testing.T) {
	t.Parallel()
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("bash-completion not installed")
	}
	dir := t.TempDir()
	shim := "#!/bin/sh\nCANARYCTL_COMPLETION_SHIM=1 exec " + os.Args[0] + " -test.run='^TestHelperCompletionShim$' -- \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "canaryctl"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		words []string
		want  string
	}{
		{"flag values", []string{"canaryctl", "run", "--output", ""}, "text json"},
		{"subcommand", []string{"canaryctl", "compl"}, "completion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			script := "source " + lib + "\nsource <(canaryctl completion bash)\n" +
				"COMP_WORDS=(" + strings.Join(quoteAll(tc.words), " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(tc.words)-1) + "\n" +
				"COMP_LINE=\"${COMP_WORDS[*]}\"\nCOMP_POINT=${#COMP_LINE}\n" +
				"__start_canaryctl canaryctl \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\" 2>/dev/null\n" +
				"echo \"${COMPREPLY[*]}\"\n"
			c := exec.CommandContext(t.Context(), "bash", "--norc", "--noprofile", "-c", script)
			c.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := c.Output()
			if got := strings.TrimSpace(string(out)); err != nil || got != tc.want {
				t.Fatalf("bash completes %q to %q (%v), want %q", tc.words, got, err, tc.want)
			}
		})
	}
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + w + "'"
	}
	return out
}
