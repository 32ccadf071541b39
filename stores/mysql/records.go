package mysqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// recordColumns are the columns scanRecord reads, in order, for a table
// aliased as alias ("" for none).
func recordColumns(alias string) string {
	cols := []string{"seq", "id", "lane", "topic", "msg_key", "payload", "headers", "created_at", "attempts", "last_error", "not_before"}
	if alias != "" {
		for i, c := range cols {
			cols[i] = alias + "." + c
		}
	}
	return strings.Join(cols, ", ")
}

// scanRecord reads the recordColumns, then extra, from rows.
func scanRecord(rows *sql.Rows, extra ...any) (outbox.Record, error) {
	var r outbox.Record
	var key, payload []byte
	var headers, lastError sql.NullString
	var created, notBefore utcTime
	dest := append([]any{&r.Seq, &r.ID, &r.Lane, &r.Topic, &key, &payload, &headers, &created, &r.Attempts, &lastError, &notBefore}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return r, err
	}
	r.Key = string(key)
	r.Payload = payload
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	if headers.Valid && headers.String != "" {
		if err := json.Unmarshal([]byte(headers.String), &r.Headers); err != nil {
			return r, fmt.Errorf("record %s: headers: %w", r.ID, err)
		}
	}
	r.CreatedAt = created.Time
	r.LastError = lastError.String
	r.NotBefore = notBefore.Time // zero when NULL
	return r, nil
}

// idList returns the IDs that can be in the outbox (canonical UUIDs, which
// Enqueue stores in lowercase) as an SQL list of literals, and how many
// there are. Other strings cannot name a record and are left out; what is
// left holds only hex digits and dashes, so it is safe to inline, and the
// statement needs no placeholder for it.
func idList(ids []string) (string, int) {
	var b strings.Builder
	n := 0
	b.WriteByte('(')
	for _, id := range ids {
		id = strings.ToLower(id)
		if !isUUID(id) {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		b.WriteString(id)
		b.WriteByte('\'')
		n++
	}
	b.WriteByte(')')
	return b.String(), n
}

// isUUID reports whether s is a UUID in lowercase canonical form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// chunks splits n items into runs of at most size.
func chunks(n, size int) [][2]int {
	var out [][2]int
	for start := 0; start < n; start += size {
		out = append(out, [2]int{start, min(n, start+size)})
	}
	return out
}
