package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/canaryctl/canaryctl/providers"
)

// Errors matched with errors.Is.
var (
	// ErrNotReady: the deployment did not pass its readiness probe within the deploy timeout.
	ErrNotReady = errors.New("not ready")
	// ErrExited: a process exited during deploy.
	ErrExited = errors.New("process exited")
	// ErrNoTarget: the cohort has no target in this Deployer (stable is never deployed by New).
	ErrNoTarget = errors.New("no deploy target for cohort")
)

// Options are what a Deployer needs beyond the configuration.
type Options struct {
	// Service is the rollout's service name: .Service in templates, and part of file names.
	Service string
	// Logger receives progress; default: discard.
	Logger *slog.Logger
	// LogDir receives process logs and exec command output, one file per cohort (and instance).
	// Default: $TMPDIR/canaryctl-SERVICE.
	LogDir string
	// StateDir receives one record per deployed cohort (ports, process ids) so that a later run,
	// e.g. `run --resume` after a crash, adopts or tears down what an earlier one started.
	// Default: LogDir.
	StateDir string
	// Executable is .Executable in templates; default: os.Executable().
	Executable string
	// HTTPClient sends readiness probes; default: a client without proxy from the environment.
	HTTPClient *http.Client
}

// Deployer deploys and tears down cohorts. It is safe for concurrent use.
type Deployer struct {
	opts  Options
	units map[providers.Cohort]*unit
}

// New validates cfg and returns a Deployer for baseline and canary.
func New(cfg Config, opts Options) (*Deployer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newDeployer(map[providers.Cohort]Target{providers.Baseline: cfg.Baseline, providers.Canary: cfg.Canary}, opts)
}

// NewTargets returns a Deployer for any cohorts, e.g. a demo's stable. Field paths in validation
// errors are deploy.COHORT.
func NewTargets(targets map[providers.Cohort]Target, opts Options) (*Deployer, error) {
	var errs []error
	for c, t := range targets {
		if !c.Valid() {
			return nil, fmt.Errorf("deploy: %w: %q", ErrNoTarget, c)
		}
		errs = append(errs, t.validate("deploy."+string(c)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newDeployer(targets, opts)
}

func newDeployer(targets map[providers.Cohort]Target, opts Options) (*Deployer, error) {
	if opts.Service == "" {
		opts.Service = "service"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(os.TempDir(), "canaryctl-"+fileSafe(opts.Service))
	}
	if opts.StateDir == "" {
		opts.StateDir = opts.LogDir
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("deploy: find the canaryctl executable: %w", err)
		}
		opts.Executable = exe
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	}
	for _, dir := range []string{opts.LogDir, opts.StateDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("deploy: create directory: %w", err)
		}
	}
	d := &Deployer{opts: opts, units: make(map[providers.Cohort]*unit, len(targets))}
	for c, t := range targets {
		t := t
		d.units[c] = &unit{cohort: c, target: &t, opts: &d.opts}
	}
	return d, nil
}

// LogDir is where logs of processes and commands are written.
func (d *Deployer) LogDir() string { return d.opts.LogDir }

// Deploy starts cohort c and returns its addresses once every address passes the readiness probe.
// Calling it again for a deployed cohort returns the same addresses. A process deployment recorded
// by an earlier run that is still alive and ready is adopted instead of started again.
// On failure whatever was started is torn down.
func (d *Deployer) Deploy(ctx context.Context, c providers.Cohort) ([]string, error) {
	u, ok := d.units[c]
	if !ok {
		return nil, fmt.Errorf("deploy %s: %w", c, ErrNoTarget)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	addrs, err := u.deploy(ctx)
	if err != nil {
		return nil, fmt.Errorf("deploy %s (%s): %w", c, u.target.Type, err)
	}
	return addrs, nil
}

// Teardown stops cohort c. It is idempotent: tearing down what is not deployed is not an error, and
// a deployment recorded by an earlier run is torn down too.
func (d *Deployer) Teardown(ctx context.Context, c providers.Cohort) error {
	u, ok := d.units[c]
	if !ok {
		return fmt.Errorf("tear down %s: %w", c, ErrNoTarget)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.teardown(ctx); err != nil {
		return fmt.Errorf("tear down %s (%s): %w", c, u.target.Type, err)
	}
	return nil
}

// Addresses returns the addresses of a deployed cohort, or nil.
func (d *Deployer) Addresses(c providers.Cohort) []string {
	u, ok := d.units[c]
	if !ok {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.addrs...)
}

// unit is one cohort's target and what was deployed for it.
type unit struct {
	mu     sync.Mutex
	cohort providers.Cohort
	target *Target
	opts   *Options
	addrs  []string // non-nil once deployed
	port   int      // exec: the .Port used
	procs  []*proc  // process: the running instances
	live   liveness // what the watcher found after the deployment was ready (watch.go)
}

func (u *unit) log() *slog.Logger {
	return u.opts.Logger.With("cohort", string(u.cohort), "type", string(u.target.Type))
}

func (u *unit) deploy(ctx context.Context) ([]string, error) {
	if u.addrs != nil {
		return append([]string(nil), u.addrs...), nil
	}
	u.resetLiveness()
	timeout := u.target.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w within the deploy timeout %s", ErrNotReady, timeout))
	defer cancel()
	var (
		addrs []string
		err   error
	)
	switch u.target.Type {
	case Static:
		addrs = append([]string(nil), u.target.Addresses...)
		if u.target.Readiness != nil {
			err = u.waitReady(ctx, addrs, nil)
		}
	case Exec:
		addrs, err = u.deployExec(ctx)
	case Process:
		addrs, err = u.deployProcess(ctx)
	default:
		err = fmt.Errorf("unknown target type %q", u.target.Type)
	}
	if err != nil {
		return nil, err
	}
	u.addrs = addrs
	u.log().Info("deployed", "addresses", strings.Join(addrs, ","))
	u.startWatch(addrs, u.procs)
	return append([]string(nil), addrs...), nil
}

func (u *unit) teardown(ctx context.Context) error {
	for _, p := range u.procs {
		p.stopping.Store(true) // an exit from here on is ours
	}
	u.endWatch()
	var err error
	switch u.target.Type {
	case Static:
	case Exec:
		err = u.teardownExec(ctx)
	case Process:
		err = u.teardownProcess(ctx)
	}
	if err != nil {
		return err
	}
	if u.addrs != nil {
		u.log().Info("torn down")
	}
	u.addrs = nil
	return nil
}

// vars returns the template data for this unit.
func (u *unit) vars(port, instance int) map[string]any {
	return vars(u.target, string(u.cohort), u.opts.Service, u.opts.Executable, port, instance)
}

// env renders Target.Env and adds PORT and CANARYCTL_* variables to the process environment.
func (u *unit) env(data map[string]any) ([]string, error) {
	env := append(os.Environ(),
		fmt.Sprintf("PORT=%d", data["Port"]),
		"CANARYCTL_COHORT="+string(u.cohort),
		"CANARYCTL_SERVICE="+u.opts.Service,
		"CANARYCTL_VERSION="+u.target.Version,
		"CANARYCTL_IMAGE="+u.target.Image,
	)
	for k, v := range u.target.Env {
		s, err := render(v, data)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		env = append(env, k+"="+s)
	}
	return env, nil
}

// logFile opens (appending) the log file called name in LogDir.
func (u *unit) logFile(name string) (*os.File, error) {
	path := filepath.Join(u.opts.LogDir, fileSafe(u.opts.Service)+"-"+string(u.cohort)+name+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// record is what a unit leaves in StateDir while it is deployed.
type record struct {
	Type      Type         `json:"type"`
	Addresses []string     `json:"addresses"`
	Port      int          `json:"port,omitempty"`
	Processes []procRecord `json:"processes,omitempty"`
}

type procRecord struct {
	PID   int    `json:"pid"`
	Start string `json:"start,omitempty"` // process start time as the OS reports it, to spot a reused pid
	Log   string `json:"log,omitempty"`
}

func (u *unit) recordPath() string {
	return filepath.Join(u.opts.StateDir, fileSafe(u.opts.Service)+"-"+string(u.cohort)+".deploy.json")
}

// writeRecord writes the record atomically: temp file, fsync, rename.
func (u *unit) writeRecord(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode deploy record: %w", err)
	}
	path := u.recordPath()
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write deploy record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write deploy record: %w", err)
	}
	return nil
}

// readRecord returns the record left by this or an earlier run, or nil.
func (u *unit) readRecord() (*record, error) {
	b, err := os.ReadFile(u.recordPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read deploy record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read deploy record %s: %w", u.recordPath(), err)
	}
	return &r, nil
}

func (u *unit) removeRecord() error {
	if err := os.Remove(u.recordPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove deploy record: %w", err)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process may take it before ours
// listens; the readiness probe (or the process exiting) then reports the failure. A process target
// with listenFD gets a listener that is never closed instead (listenLoopback).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last non-empty lines of a log file, joined with " | ", for error messages.
func tail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 2048
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > lines {
		out = out[len(out)-lines:]
	}
	return strings.Join(out, " | ")
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// listenLoopback binds a free loopback port and keeps it: the listener is handed to the instance
// (listenFD), so the port is never free for another process to take.
func listenLoopback() (*net.TCPListener, int, error) {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, 0, fmt.Errorf("listen on a free loopback port: %w", err)
	}
	return l, l.Addr().(*net.TCPAddr).Port, nil
}
