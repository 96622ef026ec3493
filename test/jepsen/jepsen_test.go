package jepsen

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var controlplaneBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("jepsen: skipped, needs root (network namespaces, nftables)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "rafter-jepsen-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	controlplaneBin = filepath.Join(dir, "controlplane")
	build := exec.Command("go", "build", "-o", controlplaneBin, "../../cmd/controlplane")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build controlplane:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	cfg.Controlplane = controlplaneBin
	cfg.ReportDir = filepath.Join(t.TempDir(), "report")
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("seed %d: %v", cfg.Seed, err)
	}
	t.Logf("seed=%d %s", cfg.Seed, res.Summary)
	return res
}

// TestShortRun is the run `make test` includes: three peers, every fault kind at
// least once, all checks must pass.
func TestShortRun(t *testing.T) {
	res := run(t, Config{Peers: 3, Duration: 70 * time.Second, Clients: 8, Keys: 40, KeyRotate: 10 * time.Second, Prefix: "rjt",
		Faults: true, FaultHold: 4 * time.Second, FaultGap: 2 * time.Second, OpTimeout: 3 * time.Second})
	if res.Faults < len(faultKinds) {
		t.Errorf("only %d faults injected, want every kind (%d)", res.Faults, len(faultKinds))
	}
	if !res.Linearizable || len(res.WatchProblems) > 0 || len(res.Lost) > 0 || !res.Converged {
		t.Fatalf("checks failed: %s\nbad keys %v\nwatch %v\nlost %v", res.Summary, res.BadKeys, res.WatchProblems, res.Lost)
	}
}

// TestStaleReadsAreCaught is a negative control: a controlplane serving default
// reads without the read index must be reported non-linearizable, with porcupine's
// visualization written.
func TestStaleReadsAreCaught(t *testing.T) {
	cfg := Config{Peers: 3, Duration: 25 * time.Second, Clients: 8, Keys: 20, Prefix: "rjs",
		Faults: true, FaultKinds: []string{"partition-leader"}, FaultHold: 4 * time.Second, FaultGap: time.Second,
		OpTimeout: 3 * time.Second, Extra: []string{"--unsafe-stale-reads"}}
	res := run(t, cfg)
	if res.Linearizable {
		t.Fatalf("stale reads went unnoticed: %s", res.Summary)
	}
}

// TestLostWritesAreCaught is a negative control: a controlplane that acknowledges
// writes before Raft commits them must be reported as losing writes. The set
// workload makes the loss certain: every client only creates fresh keys, and an
// isolated leader acknowledges each create at once until it steps down, so every
// client that reaches it in that window loses creates no later write can hide.
func TestLostWritesAreCaught(t *testing.T) {
	cfg := Config{Peers: 3, Duration: 25 * time.Second, Clients: 8, Keys: 20, Workload: "set", Prefix: "rjl",
		Faults: true, FaultKinds: []string{"partition-leader"}, FaultHold: 4 * time.Second, FaultGap: time.Second,
		OpTimeout: 3 * time.Second, Extra: []string{"--unsafe-ack-before-commit"}}
	res := run(t, cfg)
	if len(res.Lost) == 0 {
		t.Fatalf("lost writes went unnoticed: %s", res.Summary)
	}
}
