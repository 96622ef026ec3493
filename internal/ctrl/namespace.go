package ctrl

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// namespaceFinalizer is what the API server puts on a namespace being deleted;
// this controller removes it once the namespace is empty.
const namespaceFinalizer = "kubernetes"

// NamespaceController finishes namespace deletion: for a namespace marked
// Terminating (deletionTimestamp set) it deletes every object of every namespaced
// kind in it, through each kind's own List and Delete calls; once all are gone it
// removes the "kubernetes" finalizer and deletes the namespace, which the API
// server then removes for good.
type NamespaceController struct {
	conn   grpc.ClientConnInterface
	clock  Clock
	logger *slog.Logger
	shared *Informers // nil: Run uses informers of its own
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (n *NamespaceController) UseInformers(f *Informers) { n.shared = f }

// NewNamespaceController returns the controller for the API behind conn.
func NewNamespaceController(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) *NamespaceController {
	return &NamespaceController{conn: conn, clock: clock, logger: logger}
}

// Run deletes terminating namespaces until ctx ends.
func (n *NamespaceController) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, n.shared, n.conn, n.clock, n.logger)
	if err != nil {
		return err
	}
	inf := f.Namespaces()
	qcfg := DefaultQueueConfig()
	qcfg.Clock = n.clock
	q, err := NewQueue(qcfg)
	if err != nil {
		return err
	}
	enqueue := func(ns *corev1.Namespace) {
		if ns.GetMetadata().GetDeletionTimestamp() != nil {
			q.Add(ns.GetMetadata().GetName())
		}
	}
	_ = inf.AddHandler(HandlerFuncs[*corev1.Namespace]{Add: enqueue, Update: func(_, ns *corev1.Namespace) { enqueue(ns) }})
	g.Go(func() error {
		n.work(ctx, q, inf)
		return nil
	})
	return g.Wait()
}

func (n *NamespaceController) work(ctx context.Context, q *Queue, inf *Informer[*corev1.Namespace]) {
	nsClient := corev1.NewNamespacesClient(n.conn)
	for {
		name, ok := q.Get(ctx)
		if !ok {
			return
		}
		ns, ok := inf.Get("", name)
		if ok && ns.GetMetadata().GetDeletionTimestamp() != nil {
			left, err := n.sync(ctx, nsClient, ns)
			switch {
			case err != nil && ctx.Err() == nil:
				n.logger.Debug("namespace deletion", "namespace", name, "err", err)
				q.AddRateLimited(name)
			case left > 0:
				q.AddAfter(name, 500*time.Millisecond) // deletions under way
			default:
				q.Forget(name)
			}
		}
		q.Done(name)
	}
}

// sync deletes what is left in ns and returns how many objects it found; with
// none, it finalizes and deletes the namespace.
func (n *NamespaceController) sync(ctx context.Context, client corev1.NamespacesClient, ns *corev1.Namespace) (int, error) {
	name := ns.GetMetadata().GetName()
	left := 0
	for _, k := range kinds.All {
		if !k.Namespaced {
			continue
		}
		lt, err := protoregistry.GlobalTypes.FindMessageByName(k.ListMessage)
		if err != nil {
			return left, fmt.Errorf("list type of %s: %w", k.Kind, err)
		}
		ot, err := protoregistry.GlobalTypes.FindMessageByName(k.Message)
		if err != nil {
			return left, fmt.Errorf("type of %s: %w", k.Kind, err)
		}
		list := lt.New().Interface()
		if err := n.conn.Invoke(ctx, "/"+string(k.Service)+"/List", &metav1.ListRequest{Namespace: name}, list); err != nil {
			return left, fmt.Errorf("list %s: %w", k.Resource, err)
		}
		items := list.ProtoReflect().Get(list.ProtoReflect().Descriptor().Fields().ByName("items")).List()
		for i := 0; i < items.Len(); i++ {
			obj, ok := items.Get(i).Message().Interface().(Object)
			if !ok {
				continue
			}
			left++
			md := obj.GetMetadata()
			req := &metav1.DeleteRequest{Namespace: name, Name: md.GetName(), PropagationPolicy: "Background",
				Body: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid())}}}
			err := n.conn.Invoke(ctx, "/"+string(k.Service)+"/Delete", req, ot.New().Interface())
			if err != nil && status.Code(err) != codes.NotFound {
				return left, fmt.Errorf("delete %s %s: %w", k.Resource, md.GetName(), err)
			}
		}
	}
	if left > 0 {
		return left, nil
	}
	if slices.Contains(ns.GetSpec().GetFinalizers(), namespaceFinalizer) {
		next := proto.Clone(ns).(*corev1.Namespace)
		next.Spec.Finalizers = slices.DeleteFunc(next.Spec.Finalizers, func(f string) bool { return f == namespaceFinalizer })
		if _, err := client.Update(ctx, &corev1.UpdateNamespaceRequest{Name: name, Body: next}); err != nil {
			return 0, fmt.Errorf("finalize: %w", err)
		}
	}
	if _, err := client.Delete(ctx, &metav1.DeleteRequest{Name: name}); err != nil && status.Code(err) != codes.NotFound {
		return 0, fmt.Errorf("delete: %w", err)
	}
	n.logger.Info("namespace deleted", "namespace", name)
	return 0, nil
}
