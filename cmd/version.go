package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X github.com/canaryctl/canaryctl/cmd.version=..." (see Makefile).
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

// buildInfo returns version, commit and build date, falling back to what the Go toolchain recorded.
func buildInfo() (ver, rev, date string) {
	ver, rev, date = version, commit, buildDate
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
			case s.Key == "vcs.time" && date == "":
				date = s.Value
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return ver, rev, date
}

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print version, commit, build date and Go version",
		Example: "  canaryctl version",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ver, rev, date := buildInfo()
			_, err := fmt.Fprintf(env.Stdout, "canaryctl %s\ncommit: %s\nbuilt: %s\ngo: %s %s/%s\n",
				ver, rev, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
