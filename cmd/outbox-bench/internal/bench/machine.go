package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// machine describes this machine.
func machine() Machine {
	return Machine{
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		LoadBefore: loadAverage(),
	}
}

// cpuModel reads the processor's name from /proc/cpuinfo (Linux); elsewhere
// it is unknown.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// loadAverage returns the 1-, 5- and 15-minute load averages (Linux), or
// nil.
func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		if out[i], err = strconv.ParseFloat(fields[i], 64); err != nil {
			return nil
		}
	}
	return out
}

// moduleVersion returns the version of a module built into this binary, or
// "(unknown)"; a workspace module reports "(devel)".
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	for _, m := range info.Deps {
		if m.Path == path {
			if m.Replace != nil && m.Replace.Version == "" {
				return "(workspace)"
			}
			return m.Version
		}
	}
	if info.Main.Path == path {
		return info.Main.Version
	}
	return "(unknown)"
}

// runID is a short random name part, so that runs on a shared server do
// not collide.
func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyOf is the ordering key of message i of a run with keys keys.
func keyOf(i, keys int) string { return fmt.Sprintf("key-%06d", i%keys) }
