package jepsen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/rafter-dev/rafter/gen/rafter/cluster/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/test/jepsen/check"
)

// Config describes one run.
type Config struct {
	Controlplane string        // path of the controlplane binary
	Peers        int           // 3 or 5
	Duration     time.Duration // how long clients and faults run
	Clients      int
	Keys         int
	Seed         uint64
	ReportDir    string        // history, fault timeline, visualization
	Prefix       string        // network namespace prefix
	Extra        []string      // extra controlplane flags (the negative controls)
	Faults       bool          // inject faults (off for a quick sanity run)
	FaultKinds   []string      // the kinds to inject; empty = all of them
	FaultHold    time.Duration // how long each fault lasts
	FaultGap     time.Duration // calm between faults
	OpTimeout    time.Duration
}

// Result is what a run found.
type Result struct {
	Ops, Keys, Faults int
	Linearizable      bool
	BadKeys           []string
	WatchProblems     []string
	Lost              []string
	Converged         bool
	Summary           string
}

// Run executes one test and writes its report; the error is about the harness
// itself, the verdict is in Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := os.MkdirAll(cfg.ReportDir, 0o755); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "rafter-jepsen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	fmt.Fprintf(os.Stderr, "jepsen: seed=%d peers=%d duration=%s report=%s\n", cfg.Seed, cfg.Peers, cfg.Duration, cfg.ReportDir)
	c, err := startCluster(ctx, cfg.Controlplane, dataDir, cfg.Prefix, cfg.Peers, cfg.Extra)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range c.peers {
			_ = copyFile(filepath.Join(dataDir, p.id+".log"), filepath.Join(cfg.ReportDir, p.id+".log"))
		}
		c.stop()
	}()
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}

	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	rec := &recorder{start: time.Now()}
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	streams := make([][]check.WatchEvent, len(c.peers))
	locks := make([]sync.Mutex, len(c.peers))
	var wwg sync.WaitGroup
	for i := range c.peers {
		wwg.Add(1)
		go func() { defer wwg.Done(); c.watcher(watchCtx, i, &streams[i], &locks[i]) }()
	}
	for id := 0; id < cfg.Clients; id++ {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(id)+1))
		wg.Add(1)
		go func() { defer wg.Done(); c.client(runCtx, id, keys, rec, rng, cfg.OpTimeout) }()
	}
	nem := &nemesis{c: c, rng: rand.New(rand.NewPCG(cfg.Seed, 0)), start: rec.start, kinds: cfg.FaultKinds}
	if len(nem.kinds) == 0 {
		nem.kinds = faultKinds
	}
	for _, k := range nem.kinds {
		if !slices.Contains(faultKinds, k) {
			return nil, fmt.Errorf("unknown fault kind %q (known: %s)", k, strings.Join(faultKinds, ", "))
		}
	}
	if cfg.Faults {
		wg.Add(1)
		go func() { defer wg.Done(); nem.run(runCtx, cfg.FaultHold, cfg.FaultGap) }()
	}
	wg.Wait()

	// Heal everything, then let the cluster settle.
	nem.record("heal", "final", c.net.Heal())
	for _, p := range c.peers {
		p.signal(sigcont)
		if !p.running() {
			nem.record("restart", p.id+" (final)", c.start(p))
		}
	}
	converged, digests := c.converge(ctx, 60*time.Second)
	time.Sleep(500 * time.Millisecond) // let watchers catch up with the last changes
	stopWatch()
	wwg.Wait()

	final, err := c.finalState(ctx, rec.ops)
	if err != nil {
		return nil, fmt.Errorf("final reads: %w", err)
	}
	h := check.History{Ops: rec.ops}
	lin, bad, vis := check.Linearizable(h, 60*time.Second)
	res := &Result{
		Ops: len(rec.ops), Keys: len(keys), Faults: countFaults(nem.timeline),
		Linearizable: lin, BadKeys: bad, WatchProblems: check.Watches(streams),
		Lost: check.LostWrites(h, final), Converged: converged,
	}
	res.Summary = check.Summary(res.Ops, res.Keys, res.Faults, res.Linearizable, len(res.WatchProblems), len(res.Lost), res.Converged)

	writeJSON(filepath.Join(cfg.ReportDir, "history.json"), rec.ops)
	writeJSON(filepath.Join(cfg.ReportDir, "faults.json"), nem.timeline)
	writeJSON(filepath.Join(cfg.ReportDir, "watch-problems.json"), res.WatchProblems)
	writeJSON(filepath.Join(cfg.ReportDir, "lost.json"), res.Lost)
	writeJSON(filepath.Join(cfg.ReportDir, "digests.json"), digests)
	if !lin && vis != nil {
		if f, err := os.Create(filepath.Join(cfg.ReportDir, "linearizability.html")); err == nil {
			_ = vis(f)
			f.Close()
		}
	}
	_ = os.WriteFile(filepath.Join(cfg.ReportDir, "summary.txt"), []byte(fmt.Sprintf("seed=%d\n%s\n", cfg.Seed, res.Summary)), 0o644)
	return res, nil
}

func countFaults(t []fault) int {
	n := 0
	for _, f := range t {
		switch f.Kind {
		case "heal", "restart", "resume":
		default:
			n++
		}
	}
	return n
}

// converge waits until every peer reports the same applied index and the same
// digest of its local state.
func (c *cluster) converge(ctx context.Context, timeout time.Duration) (bool, []string) {
	deadline := time.Now().Add(timeout)
	var digests []string
	for time.Now().Before(deadline) {
		var applied []uint64
		digests = digests[:0]
		ok := true
		for i, conn := range c.conns {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := clusterv1.NewPeerClient(conn).Status(cctx, &clusterv1.StatusRequest{})
			var d string
			if err == nil {
				d, err = c.digest(cctx, i)
			}
			cancel()
			if err != nil {
				ok = false
				break
			}
			applied = append(applied, st.GetAppliedIndex())
			digests = append(digests, d)
		}
		if ok && check.Converged(applied, digests) {
			return true, digests
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false, digests
}

// digest hashes a peer's local (resourceVersion=0) view of the workload.
func (c *cluster) digest(ctx context.Context, i int) (string, error) {
	list, err := cmClient(c.conns[i]).List(ctx, &metav1.ListRequest{Namespace: namespace, ResourceVersion: "0"})
	if err != nil {
		return "", err
	}
	items := list.GetItems()
	sort.Slice(items, func(a, b int) bool { return items[a].GetMetadata().GetName() < items[b].GetMetadata().GetName() })
	h := sha256.New()
	for _, it := range items {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(it)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// finalState reads, linearizably after healing, every key the history touched.
func (c *cluster) finalState(ctx context.Context, ops []check.Op) (map[string]check.Final, error) {
	out := map[string]check.Final{}
	var list *corev1.ConfigMapList
	var err error
	for attempt := 0; attempt < 60; attempt++ { // an election may still be settling
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err = cmClient(c.conns[attempt%len(c.conns)]).List(cctx, &metav1.ListRequest{Namespace: namespace})
		cancel()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	byName := map[string]*corev1.ConfigMap{}
	for _, it := range list.GetItems() {
		byName[it.GetMetadata().GetName()] = it
	}
	for _, op := range ops {
		k := op.Key
		if _, done := out[k]; done {
			continue
		}
		if cm, ok := byName[k]; ok {
			out[k] = check.Final{Found: true, Value: cm.GetData()["v"], RV: cm.GetMetadata().GetResourceVersion()}
		} else {
			out[k] = check.Final{}
		}
	}
	return out, nil
}

func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
