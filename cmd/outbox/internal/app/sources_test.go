package app_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
)

// settings are the flags of the test command.
type settings struct {
	store   string
	batch   int
	lease   time.Duration
	topics  []string
	verbose bool
	yes     bool
}

// runTest runs a command with the flags above through App.Prepare, as the
// root command does, and returns what it saw.
func runTest(t *testing.T, env map[string]string, args ...string) (settings, *app.App, error) {
	t.Helper()
	var s settings
	a := &app.App{
		Stdin: strings.NewReader(""), Stdout: new(bytes.Buffer), Stderr: new(bytes.Buffer),
		Getenv: func(k string) string { return env[k] },
	}
	root := &cobra.Command{Use: "outbox", PersistentPreRunE: a.Prepare, SilenceErrors: true, SilenceUsage: true}
	root.SetFlagErrorFunc(app.FlagError)
	a.RegisterGlobalFlags(root)
	cmd := &cobra.Command{Use: "run", RunE: func(*cobra.Command, []string) error { return nil }}
	fs := cmd.Flags()
	fs.StringVar(&s.store, "store", "", "")
	fs.IntVar(&s.batch, "batch-size", 500, "")
	fs.DurationVar(&s.lease, "lease", time.Minute, "")
	fs.StringSliceVar(&s.topics, "topic-map", nil, "")
	fs.BoolVar(&s.verbose, "verbose", false, "")
	fs.BoolVar(&s.yes, "yes", false, "")
	app.NoEnv(fs.Lookup("yes"))
	root.AddCommand(cmd)
	root.SetArgs(append([]string{"run"}, args...))
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	err := root.Execute()
	return s, a, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	config := writeConfig(t, `
store: postgres://file/db
batch-size: 7
lease: 90s
topic-map: [a=b, c=d]
verbose: true
`)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want settings
		src  map[string]string // flag -> App.Source
	}{
		{
			name: "defaults",
			want: settings{batch: 500, lease: time.Minute},
			src:  map[string]string{"store": "--store"},
		},
		{
			name: "config file",
			args: []string{"--config", config},
			want: settings{store: "postgres://file/db", batch: 7, lease: 90 * time.Second, topics: []string{"a=b", "c=d"}, verbose: true},
			src:  map[string]string{"store": `"store" in ` + config},
		},
		{
			name: "config file from OUTBOX_CONFIG",
			env:  map[string]string{"OUTBOX_CONFIG": config},
			want: settings{store: "postgres://file/db", batch: 7, lease: 90 * time.Second, topics: []string{"a=b", "c=d"}, verbose: true},
		},
		{
			name: "environment over config file",
			env: map[string]string{
				"OUTBOX_CONFIG": config, "OUTBOX_STORE_URL": "postgres://env/db", "OUTBOX_BATCH_SIZE": "8",
				"OUTBOX_TOPIC_MAP": "x=y, z=w", "OUTBOX_YES": "true", "OUTBOX_LEASE": "",
			},
			want: settings{store: "postgres://env/db", batch: 8, lease: 90 * time.Second, topics: []string{"x=y", "z=w"}, verbose: true},
			src:  map[string]string{"store": "OUTBOX_STORE_URL", "batch-size": "OUTBOX_BATCH_SIZE"},
		},
		{
			name: "flags over environment",
			env:  map[string]string{"OUTBOX_CONFIG": config, "OUTBOX_STORE_URL": "postgres://env/db", "OUTBOX_BATCH_SIZE": "8"},
			args: []string{"--store", "postgres://flag/db", "--batch-size", "9", "--topic-map", "p=q", "--topic-map", "r=s", "--yes"},
			want: settings{store: "postgres://flag/db", batch: 9, lease: 90 * time.Second, topics: []string{"p=q", "r=s"}, verbose: true, yes: true},
			src:  map[string]string{"store": "--store", "batch-size": "--batch-size", "lease": `"lease" in ` + config},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, a, err := runTest(t, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got.store != tt.want.store || got.batch != tt.want.batch || got.lease != tt.want.lease ||
				strings.Join(got.topics, " ") != strings.Join(tt.want.topics, " ") || got.verbose != tt.want.verbose || got.yes != tt.want.yes {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			for flag, want := range tt.src {
				if src := a.Source(flag); src != want {
					t.Errorf("Source(%q) = %q, want %q", flag, src, want)
				}
			}
		})
	}
}

func TestSourceErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // substrings of the error
	}{
		{"bad environment value", map[string]string{"OUTBOX_BATCH_SIZE": "many"}, nil,
			[]string{`OUTBOX_BATCH_SIZE="many"`, "invalid syntax"}},
		{"unknown config key", nil, []string{"--config", writeConfig(t, "batch_size: 3\n")},
			[]string{`unknown key "batch_size"`, `did you mean "batch-size"?`}},
		{"config key of a flag that only the command line sets", nil, []string{"--config", writeConfig(t, "yes: true\n")},
			[]string{`unknown key "yes"`}},
		{"bad config value", nil, []string{"--config", writeConfig(t, "lease: soon\n")},
			[]string{`"lease"`, "invalid"}},
		{"list for a single value", nil, []string{"--config", writeConfig(t, "lease: [1s, 2s]\n")},
			[]string{`"lease"`, "one value"}},
		{"not a mapping", nil, []string{"--config", writeConfig(t, "- a\n- b\n")},
			[]string{"want a mapping"}},
		{"missing config file", nil, []string{"--config", "/nonexistent/outbox.yaml"},
			[]string{"--config", "no such file"}},
		{"unknown flag", nil, []string{"--batch-sise", "3"},
			[]string{"unknown flag: --batch-sise", "Did you mean this?\n\t--batch-size"}},
		{"bad log level", nil, []string{"--log-level", "loud"},
			[]string{"--log-level", "unknown log level"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runTest(t, tt.env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			var ue *app.UsageError
			if !errors.As(err, &ue) || app.ExitCode(err) != app.ExitUsage {
				t.Errorf("error %v is not a usage error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for flag, want := range map[string]string{
		"store": "OUTBOX_STORE_URL", "broker": "OUTBOX_BROKER_URL", "batch-size": "OUTBOX_BATCH_SIZE", "topic-map": "OUTBOX_TOPIC_MAP",
	} {
		if got := app.EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	names := []string{"batch-size", "broker", "store", "strict-order", "topic-map", "topic-prefix"}
	for in, want := range map[string]string{
		"batch-sise": "batch-size", "borker": "broker", "stroe": "store", "topic": "topic-map", "zzzzzz": "",
	} {
		if got := app.Closest(in, names); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		terminal bool
		input    string
		yes      bool
		ok       bool
	}{
		{"--yes", false, "", true, true},
		{"no terminal", false, "y\n", false, false},
		{"terminal, yes", true, "yes\n", false, true},
		{"terminal, y", true, "y\n", false, true},
		{"terminal, no", true, "n\n", false, false},
		{"terminal, empty", true, "\n", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := new(bytes.Buffer)
			a := &app.App{Stdin: strings.NewReader(tt.input), Stdout: new(bytes.Buffer), Stderr: stderr,
				IsTerminal: func(any) bool { return tt.terminal }}
			err := a.Confirm("Purge 3 dead letters?", tt.yes)
			if (err == nil) != tt.ok {
				t.Fatalf("Confirm = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, app.ErrNotConfirmed) {
				t.Errorf("error %v does not match ErrNotConfirmed", err)
			}
			if !tt.terminal && !tt.yes && !strings.Contains(err.Error(), "--yes") {
				t.Errorf("refusal %q does not mention --yes", err)
			}
			if tt.terminal && !tt.yes && !strings.Contains(stderr.String(), "Purge 3 dead letters? [y/N]") {
				t.Errorf("prompt %q", stderr.String())
			}
		})
	}
}
