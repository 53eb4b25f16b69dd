package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCompletionCmd replaces cobra's default completion command (same scripts) so that every
// subcommand carries an example and the scripts are written to the injected stdout.
func newCompletionCmd(env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `completion prints a script that completes canaryctl's commands, flags and flag values (e.g. -o text|json)
in bash, zsh, fish or PowerShell. The bash script needs the bash-completion package (v2).`,
		Example: `  source <(canaryctl completion bash)                      # this bash session
  canaryctl completion bash > /etc/bash_completion.d/canaryctl
  canaryctl completion zsh > "${fpath[1]}/_canaryctl"      # then start a new shell
  canaryctl completion fish > ~/.config/fish/completions/canaryctl.fish`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return usageErrorf("completion: name a shell: bash, zsh, fish or powershell")
		},
	}
	noDesc := false
	c.PersistentFlags().BoolVar(&noDesc, "no-descriptions", false, "leave the descriptions out of the completions")
	shells := []struct {
		name, example string
		gen           func(root *cobra.Command) error
	}{
		{"bash", "  source <(canaryctl completion bash)\n  canaryctl completion bash > /etc/bash_completion.d/canaryctl",
			func(root *cobra.Command) error { return root.GenBashCompletionV2(env.Stdout, !noDesc) }},
		{"zsh", "  canaryctl completion zsh > \"${fpath[1]}/_canaryctl\"\n  source <(canaryctl completion zsh)",
			func(root *cobra.Command) error {
				if noDesc {
					return root.GenZshCompletionNoDesc(env.Stdout)
				}
				return root.GenZshCompletion(env.Stdout)
			}},
		{"fish", "  canaryctl completion fish > ~/.config/fish/completions/canaryctl.fish\n  canaryctl completion fish | source",
			func(root *cobra.Command) error { return root.GenFishCompletion(env.Stdout, !noDesc) }},
		{"powershell", "  canaryctl completion powershell | Out-String | Invoke-Expression",
			func(root *cobra.Command) error {
				if noDesc {
					return root.GenPowerShellCompletion(env.Stdout)
				}
				return root.GenPowerShellCompletionWithDesc(env.Stdout)
			}},
	}
	for _, sh := range shells {
		c.AddCommand(&cobra.Command{
			Use:                   sh.name,
			Short:                 fmt.Sprintf("Print the %s completion script", sh.name),
			Example:               sh.example,
			Args:                  cobra.NoArgs,
			DisableFlagsInUseLine: true,
			ValidArgsFunction:     cobra.NoFileCompletions,
			RunE: func(c *cobra.Command, _ []string) error {
				if err := sh.gen(c.Root()); err != nil {
					return fmt.Errorf("write %s completion script: %w", sh.name, err)
				}
				return nil
			},
		})
	}
	return c
}
