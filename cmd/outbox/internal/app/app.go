// Package app is what the commands of the outbox CLI share: the standard
// streams, logging, the sources behind every flag (flag > environment >
// config file > default), usage errors with suggestions, confirmation
// prompts, and retrying a backend that does not answer yet.
//
// A command is a package under internal/command that exports
//
//	func Command(a *app.App) *cobra.Command
//
// and is listed once in cli/commands.go. It reads its flags from the
// variables it binds them to; by the time its RunE runs, [App.Prepare] (the
// root's PersistentPreRunE) has filled every flag not given on the command
// line from the environment or the config file.
package app

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// App holds the process-wide state of one run of the CLI. Tests build one
// with their own streams and environment; [New] builds the real one.
type App struct {
	// Stdin, Stdout and Stderr are the standard streams. Commands write
	// results to Stdout and logs, prompts and progress to Stderr.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Getenv reads an environment variable. Default os.Getenv.
	Getenv func(string) string

	// IsTerminal reports whether stream (one of the three above) is an
	// interactive terminal. Default: true for an *os.File on a terminal.
	IsTerminal func(stream any) bool

	// Version is printed by --version.
	Version string

	logLevel   string
	logFormat  string
	configPath string
	logger     *slog.Logger
	sources    map[string]string // flag name -> where its value came from
	fromFile   map[string]string // flag name -> "--config" or OUTBOX_CONFIG, for values from the config file
	opened     opened            // what the command opened, for Explain
}

// New returns an App on the given streams and the process environment.
func New(stdin io.Reader, stdout, stderr io.Writer) *App {
	return &App{Stdin: stdin, Stdout: stdout, Stderr: stderr}
}

// Env returns the value of an environment variable, through Getenv.
func (a *App) Env(name string) string { return a.getenv(name) }

func (a *App) getenv(name string) string {
	if a.Getenv == nil {
		return os.Getenv(name)
	}
	return a.Getenv(name)
}

// Terminal reports whether stream is an interactive terminal.
func (a *App) Terminal(stream any) bool {
	if a.IsTerminal != nil {
		return a.IsTerminal(stream)
	}
	f, ok := stream.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// RegisterGlobalFlags adds the flags every command has (--config,
// --log-level, --log-format) to root's persistent flags.
func (a *App) RegisterGlobalFlags(root *cobra.Command) {
	fs := root.PersistentFlags()
	fs.StringVar(&a.configPath, "config", "", "YAML file with default values of any flag, keyed by flag name (env OUTBOX_CONFIG)")
	fs.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	NoEnv(fs.Lookup("config")) // read from OUTBOX_CONFIG before any other source
}

// Logger returns the logger the flags --log-level and --log-format
// describe, writing to Stderr.
func (a *App) Logger() *slog.Logger {
	if a.logger == nil {
		a.logger = slog.New(slog.NewTextHandler(a.Stderr, nil))
	}
	return a.logger
}

func (a *App) buildLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return Usagef("%s: unknown log level %q; use debug, info, warn or error", a.Source("log-level"), a.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(a.logFormat) {
	case "text", "":
		a.logger = slog.New(slog.NewTextHandler(a.Stderr, opts))
	case "json":
		a.logger = slog.New(slog.NewJSONHandler(a.Stderr, opts))
	default:
		return Usagef("%s: unknown log format %q; use text or json", a.Source("log-format"), a.logFormat)
	}
	return nil
}

// Printf writes a line of results to Stdout.
func (a *App) Printf(format string, args ...any) {
	fmt.Fprintf(a.Stdout, format, args...)
}
