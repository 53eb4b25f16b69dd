package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/canaryctl/canaryctl/judge"
)

// judgeOptions are the inputs of `canaryctl judge`.
type judgeOptions struct {
	configPath string
	pairsPath  string
	pass       float64
	marginal   float64
	output     string
	seed       uint64
}

func newJudgeCmd(env *Env) *cobra.Command {
	o := &judgeOptions{}
	c := &cobra.Command{
		Use:   "judge --canary-config CONFIG.json --metric-pairs PAIRS.json",
		Short: "Judge metric set pairs with Kayenta's NetflixACAJudge",
		Long: `Judge canary against baseline exactly as Kayenta's NetflixACAJudge does: every metric set pair is
classified (Mann-Whitney, tolerance 0.25, confidence 0.98) with the settings of its metric in the
canary config, then the groups are scored and the summary score classified with --pass/--marginal.

Configs that Kayenta would crash on or silently misread (wrong types, wrong-case strings, null,
unknown keys in analysisConfigurations.canary, ...) are rejected with the JSON path of the problem.

Text output (default on a terminal): one line per metric with its classification, the mean ratio
canary/baseline, the estimated shift canary − baseline with its 98% confidence interval and the bound
the interval must clear (0.25·|estimate|; High needs lower > +bound, Low upper < −bound), and Kayenta's
reason; then the group scores and the summary score. JSON output is Kayenta's CanaryJudgeResult.

Exit codes: 0 Pass, 4 Marginal, 3 Fail, 2 invalid flags, config or pairs, 1 other errors.`,
		Example: `  canaryctl judge --canary-config testdata/judge/canary-config.json --metric-pairs testdata/judge/metric-pairs.json
  canaryctl judge --canary-config config.json --metric-pairs - --pass 90 --marginal 70 -o json < pairs.json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runJudge(env, o, c.Flags().Changed("seed"))
		},
	}
	f := c.Flags()
	f.StringVar(&o.configPath, "canary-config", "", "Kayenta canary config (JSON file, - for stdin)")
	f.StringVar(&o.pairsPath, "metric-pairs", "", "Kayenta metric set pair list (JSON file, - for stdin)")
	f.Float64Var(&o.pass, "pass", judge.DefaultThresholds.Pass, "summary score needed to pass (0..100)")
	f.Float64Var(&o.marginal, "marginal", judge.DefaultThresholds.Marginal, "summary score needed for marginal (0..100, <= --pass)")
	f.StringVarP(&o.output, "output", "o", "", "output format: json or text (default text on a terminal, json otherwise)")
	f.Uint64Var(&o.seed, "seed", 0, "seed for the noise Kayenta adds when both samples of a metric are constant (default random, as in Kayenta)")
	_ = c.MarkFlagFilename("canary-config", "json")
	_ = c.MarkFlagFilename("metric-pairs", "json")
	_ = c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"json", "text"}, cobra.ShellCompDirectiveNoFileComp
	})
	return c
}

func runJudge(env *Env, o *judgeOptions, seeded bool) error {
	output := o.output
	switch output {
	case "":
		output = "json"
		if env.StdoutIsTerminal {
			output = "text"
		}
	case "json", "text":
	default:
		return usageErrorf("--output %q is not a format: use json or text", o.output)
	}
	if o.configPath == "" {
		return usageErrorf("--canary-config is required: the Kayenta canary config JSON file")
	}
	if o.pairsPath == "" {
		return usageErrorf("--metric-pairs is required: the Kayenta metric set pair list JSON file")
	}
	if o.configPath == "-" && o.pairsPath == "-" {
		return usageErrorf("--canary-config and --metric-pairs cannot both read stdin")
	}
	th := judge.Thresholds{Pass: o.pass, Marginal: o.marginal}
	if err := th.Validate(); err != nil {
		var ce *judge.ConfigError
		if errors.As(err, &ce) {
			return usageErrorf("--%s: %s", ce.Path, ce.Problem)
		}
		return err
	}

	cfgData, err := judgeReadInput(env, o.configPath)
	if err != nil {
		return usageErrorf("judge: --canary-config %s: %v", o.configPath, unwrapPath(err))
	}
	cfg, err := judge.ParseCanaryConfig(cfgData)
	if err != nil {
		return fmt.Errorf("judge: %s: %w", o.configPath, err)
	}
	pairsData, err := judgeReadInput(env, o.pairsPath)
	if err != nil {
		return usageErrorf("judge: --metric-pairs %s: %v", o.pairsPath, unwrapPath(err))
	}
	pairs, err := judge.ParseMetricSetPairs(pairsData)
	if err != nil {
		return fmt.Errorf("judge: %s: %w", o.pairsPath, err)
	}
	var opts []judge.Option
	if seeded {
		opts = append(opts, judge.WithNoise(rand.New(rand.NewPCG(o.seed, 0))))
	}
	res, err := judge.Judge(cfg, th, pairs, opts...)
	if err != nil {
		return fmt.Errorf("judge: %w", err)
	}
	env.Logger.Debug("judged", "metrics", len(res.Results), "score", float64(res.Score.Score),
		"classification", string(res.Score.Classification))

	if output == "json" {
		err = writeJudgeJSON(env.Stdout, res)
	} else {
		err = writeJudgeText(env.Stdout, res, th)
	}
	if err != nil {
		return fmt.Errorf("judge: write result: %w", err)
	}
	return verdictResult(res.Score.Classification)
}

// unwrapPath drops the path from an *os.PathError ("open x: no such file" -> "no such file"): the
// message names the flag and the file already. A missing or unreadable input file is exit 2.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// judgeReadInput reads a file, or stdin for "-".
func judgeReadInput(env *Env, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(env.Stdin)
	}
	return os.ReadFile(path)
}

func writeJudgeJSON(w io.Writer, res *judge.Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// writeJudgeText prints one line per metric (classification, why, reason), the group scores and the
// summary score line.
func writeJudgeText(w io.Writer, res *judge.Result, th judge.Thresholds) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tCLASSIFICATION\tRATIO\tCANARY-BASELINE (98% CI)\tREASON")
	for _, r := range res.Results {
		class := string(r.Classification)
		if r.Critical {
			class += " (critical)"
		}
		if r.Muted {
			class += " (muted)"
		}
		name := r.Name
		if len(r.Tags) > 0 {
			name += " " + judgeTags(r.Tags)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, class, judgeRatio(r), judgeWhy(r.Why), judgeOrDash(r.ClassificationReason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.GroupScores) > 0 {
		parts := make([]string, 0, len(res.GroupScores))
		for _, g := range res.GroupScores {
			s := judgeNum(float64(g.Score))
			if g.NoData {
				s = "no data (counts as 100)"
			}
			parts = append(parts, g.Name+" "+s)
		}
		fmt.Fprintf(w, "groups: %s\n", strings.Join(parts, ", "))
	}
	line := fmt.Sprintf("score %s: %s (pass >= %s, marginal >= %s)", judgeNum(float64(res.Score.Score)),
		res.Score.Classification, judgeNum(th.Pass), judgeNum(th.Marginal))
	if res.Score.ClassificationReason != "" {
		line += " — " + res.Score.ClassificationReason
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func judgeTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func judgeRatio(r judge.MetricResult) string {
	if r.ResultMetadata == nil {
		return "-"
	}
	return judgeNum(r.Ratio())
}

// judgeWhy renders the classifier's evidence: the estimate of the shift and its confidence interval,
// or why there was no comparison.
func judgeWhy(w judge.Explanation) string {
	switch w.Stage {
	case judge.StageNoData:
		return fmt.Sprintf("no data (%d canary, %d baseline points)", w.CanaryCount, w.BaselineCount)
	case judge.StageIdentical:
		return "identical samples"
	case judge.StageSingleValue:
		return "one value throughout"
	case judge.StageError:
		return "comparison failed"
	case judge.StageCompared:
		s := fmt.Sprintf("%s [%s, %s] vs ±%s", judgeSigned(w.Estimate), judgeSigned(w.CILower), judgeSigned(w.CIUpper), judgeNum(w.Bound))
		if w.NoiseAdded {
			s += " (noised)"
		}
		return s
	}
	return "-"
}

func judgeNum(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.4g", f)
}

func judgeSigned(f float64) string {
	s := judgeNum(f)
	if f > 0 || (f == 0 && !math.Signbit(f)) {
		return "+" + s
	}
	return s
}

func judgeOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
