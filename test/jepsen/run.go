package jepsen

import (
	"cmp"
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
	Prefix       string        // names the namespaces, or the Docker network and containers
	Platform     string        // "netns" (the default) or "docker"
	Image        string        // the Docker platform's image; empty = DockerImage
	Workload     string        // "mixed" (the default: registers, CAS and set) or "set" (creates only)
	KeyRotate    time.Duration // every KeyRotate half the register keys give way to fresh ones; 0 = fixed keys
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
	fmt.Fprintf(os.Stderr, "jepsen: seed=%d peers=%d platform=%s duration=%s report=%s\n", cfg.Seed, cfg.Peers, cfg.Platform, cfg.Duration, cfg.ReportDir)
	var plat platform
	switch cfg.Platform {
	case "", "netns":
		plat, err = newNetnsPlatform(cfg.Controlplane, dataDir, cfg.Prefix, cfg.Peers)
	case "docker":
		plat, err = newDockerPlatform(ctx, cmp.Or(cfg.Image, DockerImage), dataDir, cfg.Prefix, cfg.Peers)
	default:
		err = fmt.Errorf("unknown platform %q (netns or docker)", cfg.Platform)
	}
	if err != nil {
		return nil, err
	}
	switch cfg.Workload {
	case "", "mixed", "set":
	default:
		plat.close()
		return nil, fmt.Errorf("unknown workload %q (mixed or set)", cfg.Workload)
	}
	c, err := startCluster(plat, cfg.Peers, cfg.Extra)
	if err != nil {
		return nil, err
	}
	defer func() {
		plat.saveLogs(cfg.ReportDir)
		c.stop()
	}()
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}

	rec := &recorder{start: time.Now()}
	keys := keySpace{n: cfg.Keys, rotate: cfg.KeyRotate, start: rec.start}
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
		go func() { defer wg.Done(); c.client(runCtx, id, cfg.Workload, keys, rec, rng, cfg.OpTimeout) }()
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
	nem.record("heal", "final", c.plat.Heal())
	for _, p := range c.peers {
		c.plat.resume(p.index)
		if !c.plat.running(p.index) {
			nem.record("restart", p.id+" (final)", c.start(p))
		}
	}
	nem.repairMembership(ctx)
	writeJSON(filepath.Join(cfg.ReportDir, "faults.json"), nem.timeline)
	converged, digests := c.converge(ctx, 60*time.Second)
	time.Sleep(500 * time.Millisecond) // let watchers catch up with the last changes
	stopWatch()
	wwg.Wait()

	// Every peer reads every key once more, linearizably; the reads join the
	// history (so porcupine checks them too) and each peer's answer is checked
	// for lost writes.
	var lost []string
	for i := range c.peers {
		final, reads, err := c.finalState(ctx, i, cfg.Clients+i, rec)
		if err != nil {
			return nil, fmt.Errorf("final reads on %s: %w", c.peers[i].id, err)
		}
		for _, l := range check.LostWrites(check.History{Ops: rec.ops}, final) {
			if !slices.Contains(lost, l) {
				lost = append(lost, l)
			}
		}
		for _, r := range reads {
			rec.add(r)
		}
	}
	h := check.History{Ops: rec.ops}
	lin, bad, vis := check.Linearizable(h, 60*time.Second)
	res := &Result{
		Ops: len(rec.ops), Keys: registerKeys(rec.ops), Faults: countFaults(nem.timeline),
		Linearizable: lin, BadKeys: bad, WatchProblems: check.Watches(streams),
		Lost: lost, Converged: converged,
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

// finalState reads, through peer i and linearizably, every key the history
// touched, and returns what it found both as a final state and as read
// operations of client id.
func (c *cluster) finalState(ctx context.Context, i, id int, rec *recorder) (map[string]check.Final, []check.Op, error) {
	var list *corev1.ConfigMapList
	var err error
	var call, ret int64
	for attempt := 0; attempt < 60; attempt++ { // an election may still be settling
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		call = rec.now()
		list, err = cmClient(c.conns[i]).List(cctx, &metav1.ListRequest{Namespace: namespace})
		ret = rec.now()
		cancel()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]*corev1.ConfigMap{}
	for _, it := range list.GetItems() {
		byName[it.GetMetadata().GetName()] = it
	}
	out := map[string]check.Final{}
	var reads []check.Op
	rec.mu.Lock()
	ops := append([]check.Op(nil), rec.ops...)
	rec.mu.Unlock()
	for _, op := range ops {
		k := op.Key
		if _, done := out[k]; done {
			continue
		}
		r := check.Op{Client: id, Kind: check.Read, Key: k, Call: call, Return: ret, Result: check.OK}
		if cm, ok := byName[k]; ok {
			out[k] = check.Final{Found: true, Value: cm.GetData()["v"], RV: cm.GetMetadata().GetResourceVersion()}
			r.Found, r.Out, r.OutRV = true, cm.GetData()["v"], cm.GetMetadata().GetResourceVersion()
		} else {
			out[k] = check.Final{}
		}
		reads = append(reads, r)
	}
	return out, reads, nil
}

func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
}

// registerKeys counts the register keys the history touched (set keys aside).
func registerKeys(ops []check.Op) int {
	seen := map[string]bool{}
	for _, op := range ops {
		if strings.HasPrefix(op.Key, "k") {
			seen[op.Key] = true
		}
	}
	return len(seen)
}
