package servers

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// MaxNameLen is the longest name Name returns.
const MaxNameLen = 48

// nameSeq makes names unique within the test binary; the random part makes
// them unique across binaries sharing a server.
var nameSeq atomic.Uint64

// Name returns an identifier for this test's own schema, database, topic or
// stream: lowercase letters, digits and underscores, starting with a letter,
// at most MaxNameLen characters, and unique across parallel tests and across
// test binaries that share a server. It reads prefix, then as much of the
// test's name as fits, then a random suffix, e.g.
// "outbox_teststore_claim_k3x9q2mzf1" for prefix "outbox" in TestStore/Claim.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	const randLen = 8
	suffix := randomID(randLen) + strconv.FormatUint(nameSeq.Add(1), 36)

	head := identifier(prefix)
	if len(head) > MaxNameLen/3 {
		head = strings.TrimRight(head[:MaxNameLen/3], "_")
	}
	if head == "" || head[0] < 'a' || head[0] > 'z' {
		head = "t" + head
	}

	// Keep the end of the test name: subtest names are the distinctive part.
	test := identifier(t.Name())
	if room := MaxNameLen - len(head) - len(suffix) - 2; len(test) > room {
		if room < 1 {
			test = ""
		} else {
			test = strings.TrimLeft(test[len(test)-room:], "_")
		}
	}

	name := head + "_"
	if test != "" {
		name += test + "_"
	}
	name += suffix
	if len(name) > MaxNameLen { // only when suffix's counter grows absurdly long
		name = name[:MaxNameLen]
	}
	return name
}

// identifier lowercases s and turns every run of other characters into a
// single underscore, trimmed at both ends.
func identifier(s string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
	}
	return strings.Trim(b.String(), "_")
}

func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
