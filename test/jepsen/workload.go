package jepsen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/test/jepsen/check"
)

// namespace holds every object of the workload.
const namespace = "default"

func (c *cluster) ready(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.httpAddr(i)+"/api/v1/namespaces/default", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// recorder collects the history; safe for concurrent use.
type recorder struct {
	start time.Time
	mu    sync.Mutex // guards ops
	ops   []check.Op
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(op check.Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// outcome classifies an error: Fail when the operation certainly did not happen,
// Info when it may have.
func outcome(err error) check.Result {
	if err == nil {
		return check.OK
	}
	switch status.Code(err) {
	case codes.NotFound, codes.AlreadyExists, codes.Aborted, codes.InvalidArgument:
		return check.Fail
	}
	return check.Info
}

// keySpace names the register keys: n keys at a time, and with rotate set, every
// rotate period the window moves on by n/2, so old keys go quiet (their
// histories stay short for the checker) and fresh ones start out absent.
type keySpace struct {
	n      int
	rotate time.Duration
	start  time.Time
}

// pick returns one of the keys in use now.
func (k keySpace) pick(rng *rand.Rand) string {
	base := 0
	if k.rotate > 0 {
		base = int(time.Since(k.start)/k.rotate) * max(k.n/2, 1)
	}
	return fmt.Sprintf("k%05d", base+rng.IntN(k.n))
}

// client runs operations against random peers until ctx ends: with workload
// "set" only creates of fresh keys, otherwise mostly register reads, writes and
// compare-and-sets, with a create now and then.
func (c *cluster) client(ctx context.Context, id int, workload string, keys keySpace, rec *recorder, rng *rand.Rand, opTimeout time.Duration) {
	// Operations in flight when the run ends finish under their own timeout
	// rather than turn indeterminate all at once.
	runCtx, ctx := ctx, context.WithoutCancel(ctx)
	seq := 0
	for runCtx.Err() == nil {
		conn := c.conns[rng.IntN(len(c.conns))]
		key := keys.pick(rng)
		switch r := rng.IntN(10); {
		case r == 0 || workload == "set":
			// The set workload: a create of a fresh key that must survive to the end.
			seq++
			rec.add(c.create(ctx, conn, id, fmt.Sprintf("s-%d-%d", id, seq), rec, opTimeout))
		case r < 4:
			rec.add(c.read(ctx, conn, id, key, rec, opTimeout))
		case r < 7:
			rec.add(c.write(ctx, conn, id, key, strconv.Itoa(rng.IntN(1000)), rec, opTimeout))
		default:
			c.cas(ctx, conn, id, key, strconv.Itoa(rng.IntN(1000)), rec, opTimeout)
		}
	}
}

func cmClient(conn *grpc.ClientConn) corev1.ConfigMapsClient { return corev1.NewConfigMapsClient(conn) }

func (c *cluster) read(ctx context.Context, conn *grpc.ClientConn, id int, key string, rec *recorder, timeout time.Duration) check.Op {
	op := check.Op{Client: id, Kind: check.Read, Key: key, Call: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cm, err := cmClient(conn).Get(cctx, &metav1.GetRequest{Namespace: namespace, Name: key})
	op.Return = rec.now()
	switch {
	case err == nil:
		op.Result, op.Found, op.Out, op.OutRV = check.OK, true, cm.GetData()["v"], cm.GetMetadata().GetResourceVersion()
	case status.Code(err) == codes.NotFound:
		op.Result, op.Found = check.OK, false
	default:
		// A failed read changed nothing: record it as failed, not indeterminate.
		op.Result, op.Err = check.Fail, err.Error()
	}
	return op
}

// write sets key to value unconditionally: an update without resourceVersion, or a
// create when the key does not exist yet.
func (c *cluster) write(ctx context.Context, conn *grpc.ClientConn, id int, key, value string, rec *recorder, timeout time.Duration) check.Op {
	op := check.Op{Client: id, Kind: check.Write, Key: key, Value: value, Call: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: key, Namespace: namespace}, Data: map[string]string{"v": value}}
	cm, err := cmClient(conn).Update(cctx, &corev1.UpdateConfigMapRequest{Namespace: namespace, Name: key, Body: body})
	if status.Code(err) == codes.NotFound {
		op.Kind = check.Create
		cm, err = cmClient(conn).Create(cctx, &corev1.CreateConfigMapRequest{Namespace: namespace, Body: body})
	}
	finish(&op, rec, cm, err)
	return op
}

// finish records a write's response: when it returned, whether it happened, and
// the resourceVersion it produced.
func finish(op *check.Op, rec *recorder, cm *corev1.ConfigMap, err error) {
	op.Return = rec.now()
	op.Result = outcome(err)
	if err != nil {
		op.Err = err.Error()
		return
	}
	op.OutRV = cm.GetMetadata().GetResourceVersion()
}

// create adds a new key that no other operation touches.
func (c *cluster) create(ctx context.Context, conn *grpc.ClientConn, id int, key string, rec *recorder, timeout time.Duration) check.Op {
	op := check.Op{Client: id, Kind: check.Create, Key: key, Value: "1", Call: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: key, Namespace: namespace}, Data: map[string]string{"v": "1"}}
	cm, err := cmClient(conn).Create(cctx, &corev1.CreateConfigMapRequest{Namespace: namespace, Body: body})
	finish(&op, rec, cm, err)
	return op
}

// cas reads key, then updates it with the resourceVersion it read as precondition.
// Both steps are recorded: the read as a read, the update as a cas.
func (c *cluster) cas(ctx context.Context, conn *grpc.ClientConn, id int, key, value string, rec *recorder, timeout time.Duration) {
	r := c.read(ctx, conn, id, key, rec, timeout)
	rec.add(r)
	if r.Result != check.OK || !r.Found {
		return
	}
	op := check.Op{Client: id, Kind: check.CAS, Key: key, Value: value, ExpectRV: r.OutRV, Call: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := &corev1.ConfigMap{Metadata: &metav1.ObjectMeta{Name: key, Namespace: namespace, ResourceVersion: r.OutRV}, Data: map[string]string{"v": value}}
	cm, err := cmClient(conn).Update(cctx, &corev1.UpdateConfigMapRequest{Namespace: namespace, Name: key, Body: body})
	finish(&op, rec, cm, err)
	rec.add(op)
}

// watcher follows every change of the workload on one peer, resuming after errors
// from the last resourceVersion it saw; each resume starts a new segment.
func (c *cluster) watcher(ctx context.Context, i int, out *[]check.WatchEvent, mu *sync.Mutex) {
	rv := "0"
	first := true
	for ctx.Err() == nil {
		stream, err := cmClient(c.conns[i]).Watch(ctx, &metav1.ListRequest{Namespace: namespace, ResourceVersion: rv})
		if err == nil {
			mu.Lock()
			if !first {
				*out = append(*out, check.WatchEvent{Type: "RESUME", RV: rv})
			}
			mu.Unlock()
			first = false
			for {
				ev, err := stream.Recv()
				if err != nil {
					if status.Code(err) == codes.OutOfRange {
						rv = "0" // fell out of the window: start over from current state
						mu.Lock()
						*out = append(*out, check.WatchEvent{Type: "RESET"})
						mu.Unlock()
					}
					break
				}
				md := ev.GetObject().GetMetadata()
				mu.Lock()
				*out = append(*out, check.WatchEvent{Type: ev.GetType(), Key: md.GetName(), Value: ev.GetObject().GetData()["v"], RV: md.GetResourceVersion()})
				mu.Unlock()
				rv = md.GetResourceVersion()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
