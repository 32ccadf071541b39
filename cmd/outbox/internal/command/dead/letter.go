package dead

import (
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	outbox "github.com/txoutbox/txoutbox/core"
)

// Letter is a dead letter as `dead list --json` and `dead show --json`
// print it. Its field names are stable.
type Letter struct {
	ID        string            `json:"id"`
	Seq       int64             `json:"seq"`
	Topic     string            `json:"topic"`
	Key       string            `json:"key"`
	Attempts  int               `json:"attempts"`
	LastError string            `json:"last_error"`
	CreatedAt time.Time         `json:"created_at"`
	DeadAt    time.Time         `json:"dead_at"`
	Headers   map[string]string `json:"headers"`
	// PayloadBytes is the payload's length.
	PayloadBytes int `json:"payload_bytes"`
	// Payload is set by `dead show`: the payload as text when it is
	// printable UTF-8, else in standard base64 (PayloadEncoding says which).
	Payload         *string `json:"payload,omitempty"`
	PayloadEncoding string  `json:"payload_encoding,omitempty"`
}

// newLetter converts d; withPayload includes the payload.
func newLetter(d outbox.DeadLetter, withPayload bool) Letter {
	l := Letter{
		ID:           d.ID,
		Seq:          d.Seq,
		Topic:        d.Topic,
		Key:          d.Key,
		Attempts:     d.Attempts,
		LastError:    d.LastError,
		CreatedAt:    d.CreatedAt.UTC(),
		DeadAt:       d.DeadAt.UTC(),
		Headers:      d.Headers,
		PayloadBytes: len(d.Payload),
	}
	if l.Headers == nil {
		l.Headers = map[string]string{}
	}
	if withPayload {
		text, encoding := payloadText(d.Payload)
		l.Payload, l.PayloadEncoding = &text, encoding
	}
	return l
}

// payloadText returns the payload as text when it is printable UTF-8
// (line breaks and tabs allowed), else base64.
func payloadText(p []byte) (string, string) {
	if utf8.Valid(p) && !strings.ContainsFunc(string(p), func(r rune) bool {
		return !unicode.IsPrint(r) && !unicode.IsSpace(r)
	}) {
		return string(p), "text"
	}
	return base64.StdEncoding.EncodeToString(p), "base64"
}

// writeTable lists letters for people, one line each.
func writeTable(w io.Writer, letters []outbox.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOPIC\tKEY\tATTEMPTS\tDEAD AT\tLAST ERROR")
	for _, d := range letters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Topic, oneLine(d.Key, 24), d.Attempts,
			d.DeadAt.UTC().Format(time.RFC3339), oneLine(d.LastError, 80))
	}
	_ = tw.Flush()
}

// writeDetails shows one letter for people.
func writeDetails(w io.Writer, l Letter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", l.ID)
	fmt.Fprintf(tw, "topic\t%s\n", l.Topic)
	fmt.Fprintf(tw, "key\t%s\n", l.Key)
	fmt.Fprintf(tw, "attempts\t%d\n", l.Attempts)
	fmt.Fprintf(tw, "created at\t%s\n", l.CreatedAt.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "dead at\t%s\n", l.DeadAt.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "last error\t%s\n", l.LastError)
	names := slices.Sorted(maps.Keys(l.Headers))
	if len(names) == 0 {
		fmt.Fprintf(tw, "headers\t(none)\n")
	}
	for i, name := range names {
		label := ""
		if i == 0 {
			label = "headers"
		}
		fmt.Fprintf(tw, "%s\t%s: %s\n", label, name, l.Headers[name])
	}
	fmt.Fprintf(tw, "payload\t%d bytes, %s\n", l.PayloadBytes, l.PayloadEncoding)
	_ = tw.Flush()
	if l.Payload != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, *l.Payload)
	}
}

// oneLine folds s onto one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > n {
		r := []rune(s)
		s = string(r[:n-1]) + "…"
	}
	return s
}
