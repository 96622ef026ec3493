package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// stage is one span of a pod's start, over the pods of a run.
type stage struct {
	name string
	d    []time.Duration // sorted
}

// runResult is the startup latencies of a set of pods.
type runResult struct {
	total   []time.Duration // issued -> seen Running; sorted
	wall    time.Duration   // first issued -> last seen Running
	stages  []stage
	cpu     string
	hostCPU time.Duration // the machine's busy CPU time while the pods started, per pod
}

func summarize(times []podTimes, shims map[string]time.Time) *runResult {
	r := &runResult{}
	spans := []struct {
		name       string
		from, till func(p podTimes) time.Time
	}{
		{"Create call (issued -> returned)", func(p podTimes) time.Time { return p.issued }, func(p podTimes) time.Time { return p.created }},
		{"scheduled (returned -> seen bound)", func(p podTimes) time.Time { return p.created }, func(p podTimes) time.Time { return p.bound }},
		{"node: bound -> container startedAt", func(p podTimes) time.Time { return p.bound }, func(p podTimes) time.Time { return p.started }},
		{"  bound -> shim ready (network, rootfs, shim)", func(p podTimes) time.Time { return p.bound }, func(p podTimes) time.Time { return p.shim }},
		{"  shim ready -> startedAt (libcontainer)", func(p podTimes) time.Time { return p.shim }, func(p podTimes) time.Time { return p.started }},
		{"startedAt -> seen Running", func(p podTimes) time.Time { return p.started }, func(p podTimes) time.Time { return p.running }},
	}
	var first, last time.Time
	for i, p := range times {
		times[i].shim = shims[p.uid]
		r.total = append(r.total, p.running.Sub(p.issued))
		if first.IsZero() || p.issued.Before(first) {
			first = p.issued
		}
		if p.running.After(last) {
			last = p.running
		}
	}
	r.wall = last.Sub(first)
	sortDurations(r.total)
	for _, s := range spans {
		st := stage{name: s.name}
		for _, p := range times {
			from, till := s.from(p), s.till(p)
			if from.IsZero() || till.IsZero() {
				continue
			}
			st.d = append(st.d, till.Sub(from))
		}
		if len(st.d) == 0 {
			continue // no debug log
		}
		sortDurations(st.d)
		r.stages = append(r.stages, st)
	}
	return r
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

// pct is the nearest-rank percentile q (0 < q <= 1) of sorted durations.
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func perPod(seconds float64, pods int) time.Duration {
	return time.Duration(seconds / float64(pods) * float64(time.Second))
}

// shimsReady reads, from the node agent's debug log, when the shim of each
// pod's first container run was ready ("msg=created ... container=<uid>_<name>_0"),
// by pod UID. The log's times have millisecond precision.
func shimsReady(logPath string) map[string]time.Time {
	out := map[string]time.Time{}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, " msg=created ") {
			continue
		}
		var at time.Time
		var id string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "time="); ok {
				at, _ = time.Parse(time.RFC3339Nano, v)
			}
			if v, ok := strings.CutPrefix(f, "container="); ok {
				id = v
			}
		}
		uid, _, ok := strings.Cut(id, "_")
		if ok && !at.IsZero() && strings.HasSuffix(id, "_0") {
			if _, seen := out[uid]; !seen {
				out[uid] = at
			}
		}
	}
	return out
}

// writeTimes writes each pod's times as CSV (Unix nanoseconds) to path, if set.
func writeTimes(path string, times []podTimes) error {
	if path == "" {
		return nil
	}
	var b strings.Builder
	b.WriteString("uid,issued,created,bound,shim,started,running\n")
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	for _, p := range times {
		fmt.Fprintf(&b, "%s,%d,%d,%d,%d,%d,%d\n", p.uid, ns(p.issued), ns(p.created), ns(p.bound), ns(p.shim), ns(p.started), ns(p.running))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func printSummary(c config, r *rafterResult, rc *runcResult) {
	b := r.burst
	p50, p99 := pct(b.total, 0.50), pct(b.total, 0.99)
	met := "met"
	if p99 > c.target {
		met = "MISSED"
	}
	fmt.Println()
	if pc := r.paced; pc != nil {
		pp50, pp99 := pct(pc.total, 0.50), pct(pc.total, 0.99)
		pmet := "met"
		if pp99 > c.target {
			pmet = "MISSED"
		}
		fmt.Printf("pods=%d paced at %g/s (Kubernetes' SLO method)  rafter: p50=%s p99=%s max=%s   ratio to runc run -d p50=%.1fx p99=%.1fx   (target p99 <= %s: %s)\n",
			len(pc.total), c.rate, ms(pp50), ms(pp99), ms(pct(pc.total, 1)),
			ratio(pp50, pct(rc.run, 0.50)), ratio(pp99, pct(rc.run, 0.99)), c.target, pmet)
	}
	fmt.Printf("pods=%d at once, node=1 image=cached  rafter: p50=%s p99=%s max=%s wall=%s\n",
		len(b.total), ms(p50), ms(p99), ms(pct(b.total, 1)), b.wall.Round(100*time.Millisecond))
	fmt.Printf("runc run -d (same rootfs): p50=%s p99=%s   (%d one at a time; runc delete -f p50=%s)\n",
		ms(pct(rc.run, 0.50)), ms(pct(rc.run, 0.99)), len(rc.run), ms(pct(rc.del, 0.50)))
	fmt.Printf("ratio p50=%.1fx p99=%.1fx   (all at once: target p99 <= %s: %s; Kubernetes SLO p99 <= 5s)\n",
		ratio(p50, pct(rc.run, 0.50)), ratio(p99, pct(rc.run, 0.99)), c.target, met)
	fmt.Printf("runc run -d x%d at once (the burst's floor here): p50=%s p99=%s wall=%s   ratio p50=%.1fx p99=%.1fx\n",
		len(rc.burst), ms(pct(rc.burst, 0.50)), ms(pct(rc.burst, 0.99)), rc.wall.Round(10*time.Millisecond),
		ratio(p50, pct(rc.burst, 0.50)), ratio(p99, pct(rc.burst, 0.99)))
	fmt.Println()
	fmt.Println("stages of the burst (p50 / p99 / max; times seen by the bench's watch, startedAt from the runtime, shim ready from the node's debug log):")
	for _, s := range b.stages {
		fmt.Printf("  %-44s %8s %8s %8s\n", s.name, ms(pct(s.d, 0.50)), ms(pct(s.d, 0.99)), ms(pct(s.d, 1)))
	}
	fmt.Printf("  cpu during the burst: %s; host busy time per pod %s\n", b.cpu, ms(b.hostCPU))
	if s := r.serial; s != nil {
		fmt.Printf("one pod at a time (%d, each alone on the node): p50=%s p99=%s max=%s; host busy time per pod %s\n",
			len(s.total), ms(pct(s.total, 0.50)), ms(pct(s.total, 0.99)), ms(pct(s.total, 1)), ms(s.hostCPU))
		for _, st := range s.stages {
			fmt.Printf("  %-44s %8s %8s %8s\n", st.name, ms(pct(st.d, 0.50)), ms(pct(st.d, 0.99)), ms(pct(st.d, 1)))
		}
	}
	fmt.Printf("deleting the burst: %s until every pod was gone from the API, %s until the node had released them all (processes, netns, cgroups, mounts, IPs)\n",
		r.deleteAPI.Round(100*time.Millisecond), r.deleteProcs.Round(100*time.Millisecond))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}
