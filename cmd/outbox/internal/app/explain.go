package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
)

// NeedsFix reports whether err is one that no retry can cure: the server
// refuses the credentials or a privilege, the database does not exist, or
// the outbox tables do not. One-shot commands report such an error at once,
// and `outbox relay` stops with it.
func NeedsFix(err error) bool {
	return errors.Is(err, outbox.ErrAccessDenied) || errors.Is(err, outbox.ErrDatabaseMissing) ||
		errors.Is(err, outbox.ErrSchemaMissing)
}

// opened remembers what a command opened, so that an error it returns can
// be explained in terms of the server, the database and the flags.
type opened struct {
	store         *backend.Target
	schema, table string // --schema and --table as given (empty for the defaults)
}

// Explain returns the one-line message the CLI prints for err (after
// "outbox: "). The failures an operator must fix — refused credentials, a
// missing database, missing outbox tables, a server that does not answer —
// are told in terms of the server and the flag or command that fixes them;
// any other error is its own text, without the "outbox: " prefix that core
// errors start with.
func (a *App) Explain(err error) string {
	if err == nil {
		return ""
	}
	var ue *UsageError
	if !errors.As(err, &ue) {
		t := a.opened.store
		if te, ok := errors.AsType[*backend.TargetError](err); ok {
			t = &te.Target
		}
		if t != nil {
			if msg := a.Problem(*t, err); msg != "" {
				return msg
			}
		}
	}
	return withoutPrefix(err.Error())
}

// withoutPrefix removes the "outbox: " that core errors start with: the CLI
// puts its own before every message.
func withoutPrefix(msg string) string {
	for strings.HasPrefix(msg, "outbox: ") {
		msg = strings.TrimPrefix(msg, "outbox: ")
	}
	return msg
}

// Problem explains err, a failure of the store or broker t, in one line
// that names the server and how to fix it, or returns "" when err is none
// of the failures it knows: refused access, a missing database, missing
// outbox tables, a server that does not answer.
func (a *App) Problem(t backend.Target, err error) string {
	gaveUp := ""
	if g, ok := errors.AsType[*GaveUpError](err); ok {
		gaveUp = fmt.Sprintf("; gave up after %d attempts in %s (--wait %s)", g.Attempts, g.Elapsed.Round(100*time.Millisecond), g.Wait)
	}
	switch {
	case errors.Is(err, outbox.ErrAccessDenied):
		return a.accessDenied(t, err)
	case errors.Is(err, outbox.ErrDatabaseMissing):
		if t.System == "SQLite" {
			return fmt.Sprintf("the directory of the SQLite database %s does not exist: create it, or fix the path in %s", t.Addr, a.urlSource(t))
		}
		return fmt.Sprintf("database %q does not exist on %s at %s: create it, or fix the database name in %s",
			t.Database, t.KnownName(), t.Addr, a.urlSource(t))
	case errors.Is(err, outbox.ErrSchemaMissing) && !t.IsBroker():
		return fmt.Sprintf("the outbox %s %s does not exist in %s: create it with %s", t.TableKind, t.Table, place(t), a.migrateCommand(t))
	case errors.Is(err, outbox.ErrUnavailable), gaveUp != "" && errors.Is(err, context.DeadlineExceeded):
		return a.unreachable(t, err, gaveUp)
	}
	return ""
}

// place names the database a table lives in, and its server.
func place(t backend.Target) string {
	if t.System == "SQLite" {
		return "the SQLite database " + t.Addr
	}
	return fmt.Sprintf("database %q on %s at %s", t.Database, t.AskName(), t.Addr)
}

// urlSource names where t's URL came from, for a message that says to fix
// it: "--store (or OUTBOX_STORE_URL)" when it came from the flag, else
// the variable or the config file.
func (a *App) urlSource(t backend.Target) string {
	flag, env := "store", "OUTBOX_STORE_URL"
	if t.IsBroker() {
		flag, env = "broker", "OUTBOX_BROKER_URL"
	}
	if src := a.Source(flag); src != "--"+flag {
		return src
	}
	return "--" + flag + " (or " + env + ")"
}

func (a *App) accessDenied(t backend.Target, err error) string {
	says := ""
	if s := backend.ServerSays(err); s != "" {
		says = " (" + s + ")"
	}
	where := a.urlSource(t)
	switch {
	case t.System == "SQLite":
		return fmt.Sprintf("the SQLite database %s cannot be written: check the permissions of the file and its directory, or fix the path in %s", t.Addr, where)
	case t.System == "NATS":
		return fmt.Sprintf("NATS at %s refused the credentials%s: check the user and password, token, creds or nkey in %s", t.Addr, says, where)
	case t.System == "Kafka" && backend.LoginRefused(err):
		return fmt.Sprintf("Kafka at %s refused the credentials of user %q%s: check the user, password and sasl mechanism in %s", t.Addr, t.User, says, where)
	case t.System == "Kafka":
		return fmt.Sprintf("Kafka at %s refused user %q a permission%s: grant it WRITE on the topics and IDEMPOTENT_WRITE on the cluster, or use another user in %s", t.Addr, t.User, says, where)
	case backend.LoginRefused(err) || t.User == "":
		return fmt.Sprintf("%s at %s refused user %q%s: check the user and password in %s", t.KnownName(), t.Addr, t.User, says, where)
	}
	return fmt.Sprintf("%s at %s denied user %q access%s: grant the user access to the outbox %s %s in database %q (migrate also creates it), or use another user in %s",
		t.AskName(), t.Addr, t.User, says, t.TableKind, t.Table, t.Database, where)
}

func (a *App) unreachable(t backend.Target, err error, gaveUp string) string {
	where := a.urlSource(t)
	if t.System == "SQLite" {
		return fmt.Sprintf("the SQLite database %s cannot be used now%s: %s", t.Addr, gaveUp, withoutPrefix(err.Error()))
	}
	if says := backend.ServerSays(err); says != "" { // it answers, but cannot serve
		return fmt.Sprintf("%s at %s cannot serve now (%s)%s: try again later, or allow longer with --wait", t.KnownName(), t.Addr, says, gaveUp)
	}
	cause := t.KnownName()
	if n := backend.NetworkSays(err); n != "" {
		cause += ": " + n
	} else if errors.Is(err, context.DeadlineExceeded) {
		cause += ": no answer in time"
	}
	return fmt.Sprintf("nothing answers at %s (%s)%s: check the host and port in %s, and that the server is running", t.Addr, cause, gaveUp, where)
}

// migrateCommand is the `outbox migrate` command line that creates the
// outbox the failed command used, in backquotes: its --store, --schema and
// --table when they were given as flags (secrets hidden), then the place of
// the others, which migrate reads from the same environment or config file.
func (a *App) migrateCommand(t backend.Target) string {
	cmd := "outbox migrate"
	var elsewhere []string
	add := func(flag, value string) {
		switch src := a.Source(flag); {
		case value == "":
		case src == "--"+flag:
			cmd += " --" + flag + " " + shellQuote(value)
		case a.fromFile[flag] == "--config":
			if !strings.Contains(cmd, " --config ") {
				cmd += " --config " + shellQuote(a.configPath)
			}
		case a.fromFile[flag] != "":
			if !slices.Contains(elsewhere, ConfigEnv) {
				elsewhere = append(elsewhere, ConfigEnv)
			}
		default:
			elsewhere = append(elsewhere, src)
		}
	}
	add("store", t.URL)
	add("schema", a.opened.schema)
	add("table", a.opened.table)
	cmd = "`" + cmd + "`"
	if len(elsewhere) > 0 {
		cmd += " (with the same " + strings.Join(elsewhere, " and ") + ")"
	}
	return cmd
}

// shellQuote quotes s for a POSIX shell when it holds characters the shell
// would interpret.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!&|;<>()*?[]{}#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
