package app

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotConfirmed is returned when the operator declines a destructive
// action, or cannot be asked.
var ErrNotConfirmed = errors.New("not confirmed")

// Confirm asks the operator on Stderr to confirm a destructive action and
// reads the answer from Stdin. With yes (--yes) it asks nothing. When Stdin
// is not a terminal it refuses rather than act unattended, and says to
// pass --yes.
func (a *App) Confirm(question string, yes bool) error {
	if yes {
		return nil
	}
	if !a.Terminal(a.Stdin) {
		return fmt.Errorf("%w: %s — standard input is not a terminal, so nobody can answer; pass --yes to go ahead", ErrNotConfirmed, question)
	}
	fmt.Fprintf(a.Stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(a.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%w: nothing was changed", ErrNotConfirmed)
}

// WriteJSON writes v to Stdout as indented JSON and a newline.
func (a *App) WriteJSON(v any) error {
	enc := json.NewEncoder(a.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
