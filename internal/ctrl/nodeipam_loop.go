package ctrl

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// NodeIPAM gives every node without one a spec.podCIDR from the cluster CIDR
// (see PodCIDRs.Assign), writing each node with its resourceVersion as
// precondition. Ranges it handed out stay reserved until its informer shows them.
type NodeIPAM struct {
	conn   grpc.ClientConnInterface
	cidrs  PodCIDRs
	clock  Clock
	logger *slog.Logger
	wake   chan struct{}
	shared *Informers // nil: Run uses informers of its own
	events *EventRecorder
	full   map[string]bool // nodes told CIDRNotAvailable this term; pass goroutine only

	mu       sync.Mutex        // guards inflight
	inflight map[string]string // node -> CIDR written but not yet seen
}

// NewNodeIPAM returns the loop; cidrs must be valid.
func NewNodeIPAM(conn grpc.ClientConnInterface, cidrs PodCIDRs, clock Clock, logger *slog.Logger) *NodeIPAM {
	return &NodeIPAM{conn: conn, cidrs: cidrs, clock: clock, logger: logger, wake: make(chan struct{}, 1), inflight: map[string]string{}}
}

func (n *NodeIPAM) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (n *NodeIPAM) UseInformers(f *Informers) { n.shared = f }

// Run assigns ranges until ctx ends.
func (n *NodeIPAM) Run(ctx context.Context) error {
	nodes := corev1.NewNodesClient(n.conn)
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, n.shared, n.conn, n.clock, n.logger)
	if err != nil {
		return err
	}
	inf := f.Nodes()
	n.events = NewEventRecorder(corev1.NewEventsClient(n.conn), "node-ipam-controller", n.clock, n.logger)
	n.full = map[string]bool{}
	g.Go(func() error { return n.events.Run(ctx) })
	_ = inf.AddHandler(HandlerFuncs[*corev1.Node]{
		Add:    func(*corev1.Node) { n.poke() },
		Update: func(_, x *corev1.Node) { n.poke() },
	})
	g.Go(func() error {
		if err := inf.WaitSynced(ctx); err != nil {
			return nil
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-n.wake:
			}
			n.pass(ctx, nodes, inf)
		}
	})
	return g.Wait()
}

func (n *NodeIPAM) pass(ctx context.Context, client corev1.NodesClient, inf *Informer[*corev1.Node]) {
	all := inf.List()
	view := make([]*corev1.Node, 0, len(all))
	n.mu.Lock()
	for _, x := range all {
		name := x.GetMetadata().GetName()
		if x.GetSpec().GetPodCIDR() != "" {
			delete(n.inflight, name)
			view = append(view, x)
			continue
		}
		if c, ok := n.inflight[name]; ok {
			x = proto.Clone(x).(*corev1.Node)
			if x.Spec == nil {
				x.Spec = &corev1.NodeSpec{}
			}
			x.Spec.PodCIDR = c
		}
		view = append(view, x)
	}
	n.mu.Unlock()
	assign, err := n.cidrs.Assign(view)
	if err != nil {
		n.logger.Warn("pod CIDRs", "err", err)
		for _, x := range view {
			name := x.GetMetadata().GetName()
			if _, ok := assign[name]; !ok && x.GetSpec().GetPodCIDR() == "" && !n.full[name] {
				n.full[name] = true // once per node and term: every node update runs a pass
				n.events.Record(Ref("Node", "v1", x.GetMetadata()), "Normal", "CIDRNotAvailable",
					fmt.Sprintf("Node %s status is now: CIDRNotAvailable", name))
			}
		}
	}
	for name, cidr := range assign {
		cur, ok := inf.Get("", name)
		if !ok {
			continue
		}
		next := proto.Clone(cur).(*corev1.Node)
		if next.Spec == nil {
			next.Spec = &corev1.NodeSpec{}
		}
		next.Spec.PodCIDR, next.Spec.PodCIDRs = cidr, []string{cidr}
		n.mu.Lock()
		n.inflight[name] = cidr
		n.mu.Unlock()
		_, err := client.Update(ctx, &corev1.UpdateNodeRequest{Name: name, Body: next})
		if err != nil {
			n.mu.Lock()
			delete(n.inflight, name)
			n.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			n.logger.Debug("assign pod CIDR", "node", name, "err", err)
			t := n.clock.NewTimer(time.Second)
			go func() {
				defer t.Stop()
				select {
				case <-t.C():
					n.poke()
				case <-ctx.Done():
				}
			}()
			continue
		}
		n.logger.Info("assigned pod CIDR", "node", name, "cidr", cidr)
	}
}
