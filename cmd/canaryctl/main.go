// Command canaryctl ships a new version of a service safely: canary and baseline beside stable,
// traffic shifted in steps, every step judged with Kayenta-style statistics.
package main

import (
	"os"

	"github.com/canaryctl/canaryctl/cmd"
)

func main() { os.Exit(cmd.Main(os.Args[1:])) }
