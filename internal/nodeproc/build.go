package nodeproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// BinaryEnv names the environment variable that points at a prebuilt raftkv
// binary. When it is set, BuildBinary uses that file instead of building.
const BinaryEnv = "RAFTKV_BIN"

// RaceEnv names the environment variable that, when set to "1", makes
// BuildBinary build the server with the race detector. A server that hits a
// data race then exits non-zero, which Stop reports.
const RaceEnv = "RAFTKV_BIN_RACE"

// BuildBinary returns the path of a raftkv binary. If RAFTKV_BIN is set it is
// used as is; otherwise the server is built into dir with `go build`.
func BuildBinary(dir string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return abs, nil
	}
	out := filepath.Join(dir, "raftkv")
	args := []string{"build", "-o", out}
	if os.Getenv(RaceEnv) == "1" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/raftkv/raftkv/cmd/raftkv")
	cmd := exec.Command("go", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// Ports handed out by FreeAddr in this process, so two nodes never get the same one.
var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
// Something else may still take it before the node binds; a cluster start
// then picks other ports and tries again.
func FreeAddr() (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portMu.Lock()
		fresh := !usedPorts[port]
		usedPorts[port] = true
		portMu.Unlock()
		if fresh {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
		}
	}
	return "", errors.New("no unused port found")
}

// cleanEnv drops RAFTKV_* variables so the caller's environment cannot
// change the flags the harness passes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTKV_") {
			env = append(env, kv)
		}
	}
	return env
}
