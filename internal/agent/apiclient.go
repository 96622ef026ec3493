package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// APIClient is the pod workers' way to the control plane: PodAPI,
// ObjectSource and ClaimSource over the gRPC API, failing over between peers.
// ConfigMaps and Secrets are cached for CacheTTL so that many containers of
// one pod, and resyncs, do not read them again and again.
type APIClient struct {
	conns    []grpc.ClientConnInterface
	cur      atomic.Uint64
	CacheTTL time.Duration
	Clock    Clock

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	obj proto.Message
	err error
	at  time.Time
}

// NewAPIClient returns a client over conns (one per peer).
func NewAPIClient(clock Clock, conns ...grpc.ClientConnInterface) *APIClient {
	return &APIClient{conns: conns, CacheTTL: 5 * time.Second, Clock: clock, cache: map[string]cached{}}
}

// call runs fn on the current peer, moving to the next one while peers are
// unreachable.
func (c *APIClient) call(ctx context.Context, fn func(grpc.ClientConnInterface) error) error {
	var err error
	for range len(c.conns) {
		i := c.cur.Load()
		err = fn(c.conns[i%uint64(len(c.conns))])
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		c.cur.CompareAndSwap(i, i+1)
	}
	return err
}

func (c *APIClient) get(key string, read func(ctx context.Context) (proto.Message, error)) (proto.Message, error) {
	now := c.Clock.Now()
	c.mu.Lock()
	e, ok := c.cache[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.CacheTTL {
		return e.obj, e.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obj, err := read(ctx)
	if status.Code(err) == codes.NotFound {
		err = fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err == nil || errors.Is(err, ErrNotFound) {
		c.mu.Lock()
		c.cache[key] = cached{obj: obj, err: err, at: now}
		c.mu.Unlock()
	}
	return obj, err
}

// cachedGet reads key through the cache (get), fetching it from the current
// peer (call) when it is not fresh.
func cachedGet[T proto.Message](c *APIClient, key string, fetch func(context.Context, grpc.ClientConnInterface) (T, error)) (T, error) {
	obj, err := c.get(key, func(ctx context.Context) (proto.Message, error) {
		var out T
		err := c.call(ctx, func(cc grpc.ClientConnInterface) error {
			var err error
			out, err = fetch(ctx, cc)
			return err
		})
		return out, err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return obj.(T), nil
}

// ConfigMap implements ObjectSource.
func (c *APIClient) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	return cachedGet(c, "configmap/"+ns+"/"+name, func(ctx context.Context, cc grpc.ClientConnInterface) (*corev1.ConfigMap, error) {
		return corev1.NewConfigMapsClient(cc).Get(ctx, &metav1.GetRequest{Namespace: ns, Name: name})
	})
}

// Secret implements ObjectSource.
func (c *APIClient) Secret(ns, name string) (*corev1.Secret, error) {
	return cachedGet(c, "secret/"+ns+"/"+name, func(ctx context.Context, cc grpc.ClientConnInterface) (*corev1.Secret, error) {
		return corev1.NewSecretsClient(cc).Get(ctx, &metav1.GetRequest{Namespace: ns, Name: name})
	})
}

// PersistentVolumeClaim implements ClaimSource.
func (c *APIClient) PersistentVolumeClaim(ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return cachedGet(c, "pvc/"+ns+"/"+name, func(ctx context.Context, cc grpc.ClientConnInterface) (*corev1.PersistentVolumeClaim, error) {
		return corev1.NewPersistentVolumeClaimsClient(cc).Get(ctx, &metav1.GetRequest{Namespace: ns, Name: name})
	})
}

// PersistentVolume implements ClaimSource.
func (c *APIClient) PersistentVolume(name string) (*corev1.PersistentVolume, error) {
	return cachedGet(c, "pv/"+name, func(ctx context.Context, cc grpc.ClientConnInterface) (*corev1.PersistentVolume, error) {
		return corev1.NewPersistentVolumesClient(cc).Get(ctx, &metav1.GetRequest{Name: name})
	})
}

// WriteStatus implements PodAPI: the status goes on the pod as last read, with
// its resourceVersion as precondition; on Conflict the pod is read again
// (unless it is gone or another pod took its name) and the write repeated.
func (c *APIClient) WriteStatus(ctx context.Context, pod *corev1.Pod, st *corev1.PodStatus) error {
	md := pod.GetMetadata()
	rv := md.GetResourceVersion()
	for attempt := 0; ; attempt++ {
		upd := &corev1.Pod{ApiVersion: "v1", Kind: "Pod",
			Metadata: &metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), Uid: md.GetUid(), ResourceVersion: rv},
			Status:   st}
		err := c.call(ctx, func(cc grpc.ClientConnInterface) error {
			_, err := corev1.NewPodsClient(cc).UpdateStatus(ctx, &corev1.UpdatePodRequest{Namespace: md.GetNamespace(), Name: md.GetName(), Body: upd})
			return err
		})
		if code := status.Code(err); err == nil || (code != codes.Aborted && code != codes.NotFound) || attempt >= 5 {
			return err
		}
		var cur *corev1.Pod
		gerr := c.call(ctx, func(cc grpc.ClientConnInterface) error {
			var err error
			cur, err = corev1.NewPodsClient(cc).Get(ctx, &metav1.GetRequest{Namespace: md.GetNamespace(), Name: md.GetName()})
			return err
		})
		if gerr != nil {
			return gerr
		}
		if cur.GetMetadata().GetUid() != md.GetUid() {
			return fmt.Errorf("pod %s/%s: %w", md.GetNamespace(), md.GetName(), ErrNotFound)
		}
		rv = cur.GetMetadata().GetResourceVersion()
	}
}

// Delete implements PodAPI.
func (c *APIClient) Delete(ctx context.Context, pod *corev1.Pod) error {
	md := pod.GetMetadata()
	zero := int64(0)
	err := c.call(ctx, func(cc grpc.ClientConnInterface) error {
		_, err := corev1.NewPodsClient(cc).Delete(ctx, &metav1.DeleteRequest{Namespace: md.GetNamespace(), Name: md.GetName(), GracePeriodSeconds: &zero,
			Body: &metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}})
		return err
	})
	switch status.Code(err) {
	case codes.NotFound, codes.Aborted: // gone, or another pod took the name
		return nil
	}
	return err
}
