package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// opTimeout bounds one write; a write that takes longer counts as an error.
const opTimeout = 10 * time.Second

// writeFunc performs write number seq of worker w. It must be safe to call from
// many goroutines at once (each worker calls it from its own goroutine).
type writeFunc func(ctx context.Context, w, seq int) error

// peerFor spreads writes over the peers: write seq of worker w goes to peer
// (w+seq)%n, so every worker meets leader and followers alike, as the official etcd
// client's round-robin balancer does with several endpoints. Which peer happens to
// lead then cannot decide a low-concurrency result.
func peerFor(w, seq, n int) int { return (w + seq) % n }

// rafterWrites creates ConfigMaps with one value of data in namespace default.
// prefix keeps names unique across steps.
func rafterWrites(conns []*grpc.ClientConn, prefix, value string) writeFunc {
	clients := make([]corev1.ConfigMapsClient, len(conns))
	for i, c := range conns {
		clients[i] = corev1.NewConfigMapsClient(c)
	}
	return func(ctx context.Context, w, seq int) error {
		_, err := clients[peerFor(w, seq, len(clients))].Create(ctx, &corev1.CreateConfigMapRequest{
			Namespace: "default",
			Body: &corev1.ConfigMap{
				Metadata: &metav1.ObjectMeta{Name: fmt.Sprintf("%s-w%d-%d", prefix, w, seq)},
				Data:     map[string]string{"v": value},
			},
		})
		return err
	}
}

// etcdWrites puts value under unique keys.
func etcdWrites(clis []*clientv3.Client, prefix, value string) writeFunc {
	return func(ctx context.Context, w, seq int) error {
		_, err := clis[peerFor(w, seq, len(clis))].Put(ctx, fmt.Sprintf("/bench/%s/w%d/%d", prefix, w, seq), value)
		return err
	}
}

// stepResult is what one system did at one concurrency during the measured window.
type stepResult struct {
	ops      int             // successful writes that completed inside the window
	errors   int             // failed writes that completed inside the window
	firstErr error           // the first of those failures
	lat      []time.Duration // latency of every successful write, sorted
	window   time.Duration
	// serverCPU and clientCPU are the CPU time the system's processes and this
	// driver used during the window.
	serverCPU, clientCPU time.Duration
}

// cpuPerOp returns d per successful write, 0 with none.
func (r stepResult) cpuPerOp(d time.Duration) time.Duration {
	if r.ops == 0 {
		return 0
	}
	return d / time.Duration(r.ops)
}

func (r stepResult) opsPerSec() float64 { return float64(r.ops) / r.window.Seconds() }

// percentile returns the q-quantile (0..1) of the latencies by the nearest-rank
// method, or 0 with no samples.
func (r stepResult) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

// workerLog is one worker's own record; merged after the step.
type workerLog struct {
	lat      []time.Duration
	errors   int
	firstErr error
}

// runStep runs n workers, each issuing writes back to back, for warmup+window. Only
// writes that complete inside the window after the warm-up are recorded. Workers
// start no new write after the window ends; writes still in flight then are left to
// finish and are not counted. serverCPU is sampled when the window opens and when
// it closes. It returns early (ctx.Err()) when ctx ends.
func runStep(ctx context.Context, n int, warmup, window time.Duration, write writeFunc, serverCPU func() time.Duration) (stepResult, error) {
	begin := time.Now()
	measureFrom, end := begin.Add(warmup), begin.Add(warmup+window)
	logs := make([]workerLog, n)
	var wg sync.WaitGroup
	var server, client [2]time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, at := range []time.Time{measureFrom, end} {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			server[i], client[i] = serverCPU(), selfCPU()
		}
	}()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := &logs[w]
			rec.lat = make([]time.Duration, 0, 1024)
			for seq := 0; ; seq++ {
				start := time.Now()
				if !start.Before(end) || ctx.Err() != nil {
					return
				}
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				err := write(octx, w, seq)
				cancel()
				done := time.Now()
				if done.Before(measureFrom) || done.After(end) || ctx.Err() != nil {
					continue
				}
				if err != nil {
					rec.errors++
					if rec.firstErr == nil {
						rec.firstErr = fmt.Errorf("worker %d write %d: %w", w, seq, err)
					}
					continue
				}
				rec.lat = append(rec.lat, done.Sub(start))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return stepResult{}, err
	}
	res := stepResult{window: window, serverCPU: server[1] - server[0], clientCPU: client[1] - client[0]}
	for _, l := range logs {
		res.lat = append(res.lat, l.lat...)
		res.errors += l.errors
		if res.firstErr == nil {
			res.firstErr = l.firstErr
		}
	}
	res.ops = len(res.lat)
	slices.Sort(res.lat)
	return res, nil
}

// selfCPU returns the user+sys CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
