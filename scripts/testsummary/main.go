// Command testsummary reads `go test -json` on standard input, prints what
// `go test` would (each package's result, and the whole output of every
// failed test), and ends with a summary a person can act on: which server
// each backend's tests used, every skipped test grouped by its reason, and a
// closing line "N passed, N failed, N skipped". It exits 1 when a test or a
// package failed.
//
//	go test -json ./... | go run ./scripts/testsummary
//
// It is a module of its own that needs the standard library alone.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	s := newSummary()
	if err := s.read(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	s.print(os.Stdout)
	if s.failed > 0 || len(s.failedPkgs) > 0 {
		os.Exit(1)
	}
}

type summary struct {
	output     map[string][]string // package + "\x00" + test: its output lines so far
	passed     int
	failed     int
	skipped    int
	failedPkgs []string
	skips      map[string][]string        // reason: "pkg Test"
	servers    map[string]map[string]bool // backend: how it was found
	start      time.Time
}

func newSummary() *summary {
	return &summary{
		output:  map[string][]string{},
		skips:   map[string][]string{},
		servers: map[string]map[string]bool{},
		start:   time.Now(),
	}
}

// found matches the line conformance/servers logs when a backend's server is
// found, e.g. "finder.go:78: postgres: using the server in OUTBOX_TEST_POSTGRES_URL".
var found = regexp.MustCompile(`\b(postgres|mysql|mongo|kafka|nats): (using the server in \S+|started a throwaway (?:local server|container))`)

func (s *summary) read(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event: a build error or other text of go itself.
			fmt.Fprintln(w, string(line))
			continue
		}
		s.handle(e, w)
	}
	return sc.Err()
}

func (s *summary) handle(e event, w io.Writer) {
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "build-output":
		fmt.Fprint(w, e.Output) // a compile error
	case "build-fail":
		// The package's own "fail" event follows and counts it.
	case "output":
		if m := found.FindStringSubmatch(e.Output); m != nil {
			if s.servers[m[1]] == nil {
				s.servers[m[1]] = map[string]bool{}
			}
			s.servers[m[1]][m[2]] = true
		}
		if e.Test == "" {
			// Package-level output: "ok", "FAIL", build failures, "PASS".
			if out := strings.TrimRight(e.Output, "\n"); out != "PASS" && out != "FAIL" && !strings.HasPrefix(out, "=== ") {
				fmt.Fprintln(w, out)
			}
			return
		}
		s.output[key] = append(s.output[key], e.Output)
	case "pass":
		if e.Test != "" {
			s.passed++
			delete(s.output, key)
		}
	case "skip":
		if e.Test == "" {
			return // a package without tests
		}
		s.skipped++
		reason := skipReason(s.output[key])
		s.skips[reason] = append(s.skips[reason], shortPackage(e.Package)+" "+e.Test)
		delete(s.output, key)
	case "fail":
		if e.Test == "" {
			s.failedPkgs = append(s.failedPkgs, e.Package)
			return
		}
		s.failed++
		for _, l := range s.output[key] {
			fmt.Fprint(w, l)
		}
		delete(s.output, key)
	}
}

// skipReason is the message of a skipped test: the lines after "--- SKIP",
// without the file:line prefix; for a test whose parent skipped, the
// parent's message is not repeated, so a test without one gets a stand-in.
func skipReason(lines []string) string {
	var msg []string
	after := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "--- SKIP"):
			after = true
		case strings.HasPrefix(t, "=== "):
		case after && t != "":
			msg = append(msg, stripLocation(t))
		}
	}
	if len(msg) == 0 {
		// The message comes before "--- SKIP" when the test logged it
		// with t.Skip from a helper; take the last line the test logged
		// (indented, after its file:line), not what a driver's logger
		// wrote to the process's output meanwhile, then any last line.
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.HasPrefix(lines[i], "    ") && location.MatchString(strings.TrimSpace(lines[i])) {
				return stripLocation(strings.TrimSpace(lines[i]))
			}
		}
		for i := len(lines) - 1; i >= 0; i-- {
			if t := strings.TrimSpace(lines[i]); t != "" && !strings.HasPrefix(t, "--- ") && !strings.HasPrefix(t, "=== ") {
				return stripLocation(t)
			}
		}
		return "(no reason given)"
	}
	return strings.Join(msg, " ")
}

var location = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

func stripLocation(s string) string { return location.ReplaceAllString(s, "") }

// shortPackage drops the module prefix: stores/mongo instead of
// github.com/txoutbox/txoutbox/stores/mongo.
func shortPackage(p string) string {
	return strings.TrimPrefix(p, "github.com/txoutbox/txoutbox/")
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n=== Summary (%s)\n", time.Since(s.start).Round(time.Second))
	fmt.Fprintln(w, "Servers the tests used:")
	for _, b := range []string{"postgres", "mysql", "mongo", "kafka", "nats"} {
		hows := slices.Sorted(maps.Keys(s.servers[b]))
		if len(hows) == 0 {
			hows = []string{"none found (its tests skipped, see below, or need none)"}
		}
		fmt.Fprintf(w, "  %-9s %s\n", b, strings.Join(hows, "; "))
	}
	if s.skipped > 0 {
		fmt.Fprintf(w, "Skipped tests (%d), by reason:\n", s.skipped)
		reasons := slices.Sorted(maps.Keys(s.skips))
		slices.SortStableFunc(reasons, func(a, b string) int { return len(s.skips[b]) - len(s.skips[a]) })
		for _, r := range reasons {
			tests := s.skips[r]
			fmt.Fprintf(w, "  %d × %s\n", len(tests), r)
			const show = 3
			for i, t := range tests {
				if i == show {
					fmt.Fprintf(w, "      … and %d more\n", len(tests)-show)
					break
				}
				fmt.Fprintf(w, "      %s\n", t)
			}
		}
	}
	for _, p := range s.failedPkgs {
		fmt.Fprintf(w, "FAILED package %s\n", shortPackage(p))
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
}
