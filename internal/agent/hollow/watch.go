package hollow

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// object is an API object: every generated kind has metadata.
type object interface {
	GetMetadata() *metav1.ObjectMeta
}

// change is what a list+watch tells the loop: one watch event, or (typ "") a
// relist holding every object that exists as of rv.
type change[T object] struct {
	typ   string // ADDED, MODIFIED, DELETED, or "" for a relist
	obj   T
	items []T
	rv    uint64
}

// kindAPI is how listWatch lists and watches one kind.
type kindAPI[T object] struct {
	kind  string
	list  func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) (items []T, md *metav1.ListMeta, err error)
	watch func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) (recv func() (typ string, obj T, err error), err error)
}

var podAPI = kindAPI[*corev1.Pod]{
	kind: "pods",
	list: func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) ([]*corev1.Pod, *metav1.ListMeta, error) {
		l, err := corev1.NewPodsClient(c).List(ctx, req)
		return l.GetItems(), l.GetMetadata(), err
	},
	watch: func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) (func() (string, *corev1.Pod, error), error) {
		s, err := corev1.NewPodsClient(c).Watch(ctx, req)
		if err != nil {
			return nil, err
		}
		return func() (string, *corev1.Pod, error) {
			ev, err := s.Recv()
			return ev.GetType(), ev.GetObject(), err
		}, nil
	},
}

var nodeAPI = kindAPI[*corev1.Node]{
	kind: "nodes",
	list: func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) ([]*corev1.Node, *metav1.ListMeta, error) {
		l, err := corev1.NewNodesClient(c).List(ctx, req)
		return l.GetItems(), l.GetMetadata(), err
	},
	watch: func(ctx context.Context, c grpc.ClientConnInterface, req *metav1.ListRequest) (func() (string, *corev1.Node, error), error) {
		s, err := corev1.NewNodesClient(c).Watch(ctx, req)
		if err != nil {
			return nil, err
		}
		return func() (string, *corev1.Node, error) {
			ev, err := s.Recv()
			return ev.GetType(), ev.GetObject(), err
		}, nil
	},
}

// listPageSize keeps each list response far below gRPC's default 4 MiB limit.
const listPageSize = 500

// listWatch lists every object of a kind matching fieldSelector, then watches
// from the list's resourceVersion, sending everything to out in order. A watch
// that breaks resumes from the last version seen on the next peer; one whose
// version left the server's window (410 Gone) relists. It returns nil when ctx
// ends, and never otherwise.
func listWatch[T object](ctx context.Context, a *Agent, api kindAPI[T], fieldSelector string, out chan<- change[T]) error {
	log := a.cfg.Logger.With("watch", api.kind)
	var (
		rv       uint64
		relist   = true
		failures int
	)
	send := func(c change[T]) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		if failures > 1 {
			select {
			case <-a.cfg.Clock.After(a.cfg.RetryInterval):
			case <-ctx.Done():
				return nil
			}
		}
		if relist {
			items, listRV, err := listAll(ctx, a, api, fieldSelector)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("list failed", "err", err)
				}
				failures++
				continue
			}
			if !send(change[T]{items: items, rv: listRV}) {
				return nil
			}
			rv, relist, failures = listRV, false, 0
		}
		i, c := a.conns.current()
		err := watchFrom(ctx, api, c, fieldSelector, &rv, func(ch change[T]) bool {
			failures = 0
			return send(ch)
		})
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.OutOfRange {
			log.Info("watch expired; relisting", "resourceVersion", rv)
			relist = true
			continue
		}
		log.Debug("watch ended; trying the next peer", "err", err)
		a.conns.next(i)
		failures++
	}
	return nil
}

// watchFrom runs one watch from *rv until it fails or deliver returns false,
// keeping *rv at the last version delivered.
func watchFrom[T object](ctx context.Context, api kindAPI[T], c grpc.ClientConnInterface, fieldSelector string, rv *uint64, deliver func(change[T]) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := api.watch(ctx, c, &metav1.ListRequest{FieldSelector: fieldSelector, ResourceVersion: strconv.FormatUint(*rv, 10), Watch: true})
	if err != nil {
		return err
	}
	for {
		typ, obj, err := recv()
		if err != nil {
			return err
		}
		v := resourceVersion(obj)
		if !deliver(change[T]{typ: typ, obj: obj, rv: v}) {
			return ctx.Err()
		}
		*rv = max(*rv, v)
	}
}

// listAll lists in pages. The server reads each page from its latest state, so
// the first page's resourceVersion is the one to watch from: changes made while
// later pages were read are replayed by the watch, and the loop ignores any
// event older than the state it already holds.
func listAll[T object](ctx context.Context, a *Agent, api kindAPI[T], fieldSelector string) ([]T, uint64, error) {
	var (
		all  []T
		rv   uint64
		cont string
	)
	for page := 0; ; page++ {
		var (
			items []T
			md    *metav1.ListMeta
		)
		err := a.conns.call(ctx, a.cfg.CallTimeout, func(ctx context.Context, c grpc.ClientConnInterface) error {
			var err error
			items, md, err = api.list(ctx, c, &metav1.ListRequest{FieldSelector: fieldSelector, Limit: listPageSize, Continue: cont})
			return err
		})
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", api.kind, err)
		}
		if page == 0 {
			if rv, err = strconv.ParseUint(md.GetResourceVersion(), 10, 64); err != nil {
				return nil, 0, fmt.Errorf("list %s: resourceVersion %q: %w", api.kind, md.GetResourceVersion(), err)
			}
		}
		all = append(all, items...)
		if cont = md.GetContinue(); cont == "" {
			return all, rv, nil
		}
	}
}

// resourceVersion parses an object's resourceVersion (a Raft index); 0 if absent.
func resourceVersion(o object) uint64 {
	v, _ := strconv.ParseUint(o.GetMetadata().GetResourceVersion(), 10, 64)
	return v
}
