package main

import (
	"bytes"
	"strings"
	"testing"
)

// A go test -json stream with a passing test, a test skipped by the finder,
// subtests skipped for one reason (one of them with a driver's log line
// after its message), a failed test and the servers' log lines.
const stream = `{"Action":"run","Package":"example.com/m/a","Test":"TestPass"}
{"Action":"output","Package":"example.com/m/a","Test":"TestPass","Output":"    finder.go:78: postgres: using the server in OUTBOX_TEST_POSTGRES_URL\n"}
{"Action":"pass","Package":"example.com/m/a","Test":"TestPass"}
{"Action":"output","Package":"example.com/m/a","Test":"TestMongo","Output":"=== RUN   TestMongo\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestMongo","Output":"--- SKIP: TestMongo (0.00s)\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestMongo","Output":"    backends.go:81: mongo: no server: set OUTBOX_TEST_MONGO_URL\n"}
{"Action":"skip","Package":"example.com/m/a","Test":"TestMongo"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/a","Output":"    harness_test.go:124: needs transactions: FerretDB\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/a","Output":"--- SKIP: TestTx/a (0.00s)\n"}
{"Action":"skip","Package":"example.com/m/a","Test":"TestTx/a"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/b","Output":"--- SKIP: TestTx/b (0.00s)\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/b","Output":"    harness_test.go:124: needs transactions: FerretDB\n"}
{"Action":"skip","Package":"example.com/m/a","Test":"TestTx/b"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/c","Output":"    run.go:82: needs transactions: FerretDB\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/c","Output":"[mysql] 2026/12/03 15:27:16 packets.go:58 unexpected EOF\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestTx/c","Output":"--- SKIP: TestTx/c (1.29s)\n"}
{"Action":"skip","Package":"example.com/m/a","Test":"TestTx/c"}
{"Action":"output","Package":"example.com/m/a","Test":"TestFail","Output":"    x_test.go:9: boom\n"}
{"Action":"output","Package":"example.com/m/a","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"example.com/m/a","Test":"TestFail"}
{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a\t0.1s\n"}
{"Action":"fail","Package":"example.com/m/a"}
`

func TestSummary(t *testing.T) {
	s := newSummary()
	var out bytes.Buffer
	if err := s.read(strings.NewReader(stream), &out); err != nil {
		t.Fatal(err)
	}
	s.print(&out)
	got := out.String()
	for _, want := range []string{
		"x_test.go:9: boom",           // a failed test's output is shown
		"FAIL\texample.com/m/a\t0.1s", // the package result line
		"postgres  using the server in OUTBOX_TEST_POSTGRES_URL",
		"mongo     none found",
		"1 × mongo: no server: set OUTBOX_TEST_MONGO_URL",
		"3 × needs transactions: FerretDB",
		"FAILED package example.com/m/a",
		"1 passed, 1 failed, 4 skipped\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q; it is:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TestPass") {
		t.Errorf("a passing test's output is shown:\n%s", got)
	}
}
