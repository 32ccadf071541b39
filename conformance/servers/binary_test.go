package servers

import (
	"os"
	"strings"
	"testing"
)

func TestFindBinaryAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, v := range []string{"9", "16", "15"} {
		if err := os.MkdirAll(dir+"/"+v+"/bin", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+v+"/bin/probe-binary", nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := FindBinary([]string{"no-such-binary-anywhere", "probe-binary"}, dir+"/*/bin")
	if want := dir + "/16/bin/probe-binary"; err != nil || got != want {
		t.Errorf("FindBinary = %q, %v, want %q", got, err, want)
	}
	if got, err := FindDir([]string{"no-such-binary-anywhere", "probe-binary"}, dir+"/*/bin"); err == nil {
		t.Errorf("FindDir found %q, which lacks one of the binaries", got)
	}
	if err := os.WriteFile(dir+"/15/bin/other-binary", nil, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err = FindDir([]string{"probe-binary", "other-binary"}, dir+"/*/bin")
	if want := dir + "/15/bin"; err != nil || got != want {
		t.Errorf("FindDir = %q, %v, want %q", got, err, want)
	}
	_, err = FindBinary([]string{"no-such-binary-anywhere"}, "/nonexistent")
	if err == nil || !strings.Contains(err.Error(), "no no-such-binary-anywhere found on PATH, /nonexistent") {
		t.Errorf("err = %v", err)
	}
}
