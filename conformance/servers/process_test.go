package servers

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper process (see runHelper).
const helperEnv = "SERVERS_TEST_HELPER"

// runHelper is the test binary as a helper process:
//
//	listen PORT   accept connections on 127.0.0.1:PORT until killed
//	fail          print two lines and exit 3
//	parent PORT   start "listen PORT" with StartProcess, print "ready", wait
func runHelper(mode string) {
	args := os.Args[len(os.Args)-1]
	switch mode {
	case "listen":
		l, err := net.Listen("tcp", "127.0.0.1:"+args)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(2)
			}
			c.Close()
		}
	case "fail":
		fmt.Println("starting")
		fmt.Fprintln(os.Stderr, "fatal: the data directory is on fire")
		os.Exit(3)
	case "parent":
		if _, err := startHelper("listen", args, "127.0.0.1:"+args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		select {} // until the test kills it
	}
	os.Exit(1)
}

// startHelper starts the test binary as a helper process.
func startHelper(mode, arg, addr string) (*Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return StartProcess(ProcessConfig{
		Name:    "helper " + mode,
		Path:    self,
		Args:    []string{"-test.run=^$", arg},
		Env:     []string{helperEnv + "=" + mode},
		Addr:    addr,
		Timeout: 10 * time.Second,
	})
}

func answersNow(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestStartProcessWaitsForThePortAndStops(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startHelper("listen", strconv.Itoa(port), addr)
	if err != nil {
		t.Fatal(err)
	}
	if !answersNow(addr) {
		t.Fatalf("StartProcess returned before %s answered", addr)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Error("Stop returned before the process exited")
	}
	if answersNow(addr) {
		t.Errorf("%s still answers after Stop", addr)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartProcessReportsAnEarlyExit(t *testing.T) {
	t.Parallel()
	port, _ := FreePort()
	_, err := startHelper("fail", "", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		t.Fatal("StartProcess succeeded for a process that exits")
	}
	for _, want := range []string{"exited before it answered", "exit status 3", "the data directory is on fire"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestStartProcessTimesOut(t *testing.T) {
	t.Parallel()
	port, _ := FreePort()
	other, _ := FreePort()
	self, _ := os.Executable()
	start := time.Now()
	_, err := StartProcess(ProcessConfig{
		Name: "helper", Path: self,
		Args:    []string{"-test.run=^$", strconv.Itoa(port)},
		Env:     []string{helperEnv + "=listen"},
		Addr:    fmt.Sprintf("127.0.0.1:%d", other), // not where it listens
		Timeout: 500 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "nothing answered") {
		t.Fatalf("err = %v, want nothing answered", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("gave up after %v", d)
	}
	if answersNow(fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Error("the process that never became ready still runs")
	}
}

func TestRunCommand(t *testing.T) {
	t.Parallel()
	self, _ := os.Executable()
	err := RunCommand(ProcessConfig{Name: "helper", Path: self, Args: []string{"-test.run=^$", ""}, Env: []string{helperEnv + "=fail"}})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "starting | fatal: the data directory is on fire") {
		t.Errorf("err = %v, want exit status 3 and the output", err)
	}
}

func TestTempDirIsRemovedAtExit(t *testing.T) {
	// Not parallel: runAtExit also ends what other tests started.
	dir, err := TempDir("probe", "")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("TempDir: %v", err)
	}
	runAtExit()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the at-exit run: %v", dir, err)
	}
}

func TestProcessDiesWithTheTestBinary(t *testing.T) {
	t.Parallel()
	if !pdeathsig {
		t.Skip("no parent-death signal on this system")
	}
	port, _ := FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	self, _ := os.Executable()
	parent := exec.Command(self, "-test.run=^$", strconv.Itoa(port))
	parent.Env = append(os.Environ(), helperEnv+"=parent")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = os.Stderr
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		_ = parent.Process.Kill()
		_ = parent.Wait()
		t.Fatalf("parent helper said %q, want ready", line)
	}
	if !answersNow(addr) {
		t.Fatalf("the child does not answer on %s", addr)
	}

	_ = parent.Process.Kill() // SIGKILL: no chance to clean up
	_ = parent.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for answersNow(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("the child still answers on %s 10s after its parent was killed", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
