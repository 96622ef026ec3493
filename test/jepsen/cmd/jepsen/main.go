// Command jepsen runs Rafter's Jepsen-style test once and prints its summary line.
// It needs root (network namespaces and nftables); --platform=docker also a
// running Docker engine and the image `make docker-image` builds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rafter-dev/rafter/test/jepsen"
	"github.com/rafter-dev/rafter/test/jepsen/check"
)

func main() {
	cfg := jepsen.Config{}
	var extra, only string
	flag.StringVar(&cfg.Controlplane, "controlplane", "bin/controlplane", "controlplane binary")
	flag.IntVar(&cfg.Peers, "peers", 3, "number of peers (3 or 5)")
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long clients and faults run")
	flag.IntVar(&cfg.Clients, "clients", 10, "concurrent clients")
	flag.IntVar(&cfg.Keys, "keys", 40, "keys (ConfigMaps) the clients share")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed; a run is reproducible from it")
	flag.StringVar(&cfg.ReportDir, "report", "test/reports/jepsen", "report directory")
	flag.StringVar(&cfg.Prefix, "prefix", "rj", "network namespace prefix")
	flag.StringVar(&cfg.Platform, "platform", "netns", "where peers run: netns (processes in network namespaces) or docker (containers)")
	flag.StringVar(&cfg.Image, "image", jepsen.DockerImage, "the peers' image on the docker platform")
	flag.StringVar(&cfg.Workload, "workload", "mixed", "mixed (registers, compare-and-set, set) or set (creates only)")
	flag.DurationVar(&cfg.KeyRotate, "key-rotate", 15*time.Second, "every this long half the register keys give way to fresh ones (0: fixed keys)")
	flag.BoolVar(&cfg.Faults, "faults", true, "inject faults")
	flag.DurationVar(&cfg.FaultHold, "fault-hold", 5*time.Second, "how long each fault lasts")
	flag.DurationVar(&cfg.FaultGap, "fault-gap", 3*time.Second, "calm between faults")
	flag.DurationVar(&cfg.OpTimeout, "op-timeout", 3*time.Second, "timeout of one client operation")
	flag.StringVar(&extra, "controlplane-flags", "", "extra controlplane flags, space-separated (e.g. --unsafe-stale-reads)")
	flag.StringVar(&only, "fault-kinds", "", "comma-separated fault kinds to inject (default all)")
	recheck := flag.String("recheck", "", "check the history.json of an earlier report again (linearizability only) instead of running")
	flag.Parse()
	if *recheck != "" {
		os.Exit(recheckHistory(*recheck))
	}
	cfg.Extra = strings.Fields(extra)
	if only != "" {
		cfg.FaultKinds = strings.Split(only, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := jepsen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		os.Exit(2)
	}
	fmt.Printf("seed=%d %s\n", cfg.Seed, res.Summary)
	if !res.Linearizable || len(res.WatchProblems) > 0 || len(res.Lost) > 0 || !res.Converged {
		os.Exit(1)
	}
}

// recheckHistory runs the linearizability checker on a saved history.
func recheckHistory(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	var h check.History
	if err := json.Unmarshal(b, &h.Ops); err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", path+":", err)
		return 2
	}
	ok, bad, _ := check.Linearizable(h, 5*time.Minute)
	fmt.Printf("ops=%d linearizable=%t bad=%v\n", len(h.Ops), ok, bad)
	if !ok {
		return 1
	}
	return 0
}
