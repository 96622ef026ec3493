package svcproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Config is the proxy's setup.
type Config struct {
	// Netns is the path of the network namespace whose rules the proxy
	// programs; "" is the process's own (the node's root netns).
	Netns string
	// Table is the nftables table (family ip) the proxy owns; default
	// DefaultTable.
	Table string
	// MinSyncInterval is the least time between two applies: changes that
	// arrive meanwhile are coalesced into one. Default 100ms.
	MinSyncInterval time.Duration
	// RetryInterval is the wait after a failed apply or list. Default 1s.
	RetryInterval time.Duration
	Logger        *slog.Logger
}

// DefaultConfig is the production setup.
func DefaultConfig() Config {
	return Config{Table: DefaultTable, MinSyncInterval: 100 * time.Millisecond, RetryInterval: time.Second}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.MinSyncInterval <= 0 || c.RetryInterval <= 0 {
		return errors.New("svcproxy: sync and retry intervals must be positive")
	}
	return nil
}

// Proxy keeps the node's service rules in line with the API's Services and
// Endpoints.
type Proxy struct {
	cfg     Config
	conns   []grpc.ClientConnInterface
	applier *Applier
	wake    chan struct{} // 1 slot: a change is waiting to be applied

	mu        sync.Mutex // guards the caches below
	services  map[string]*corev1.Service
	endpoints map[string]*corev1.Endpoints
	synced    [2]bool // services, endpoints listed once
}

// New returns a proxy that reads the API through any of conns (one per
// control-plane peer; a failed call moves to the next).
func New(cfg Config, conns ...grpc.ClientConnInterface) (*Proxy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(conns) == 0 {
		return nil, errors.New("svcproxy: no API connection")
	}
	return &Proxy{cfg: cfg, conns: conns, applier: NewApplier(cfg.Netns, cfg.Table), wake: make(chan struct{}, 1),
		services: map[string]*corev1.Service{}, endpoints: map[string]*corev1.Endpoints{}}, nil
}

// Run watches Services and Endpoints and applies the rules until ctx ends;
// then it removes its table (a clean shutdown leaves nothing) and returns
// nil, or the removal's error. It applies nothing before both kinds were
// listed once, and at most once per MinSyncInterval.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		watchKind(ctx, p, 0, func(c grpc.ClientConnInterface) lister[*corev1.Service, *corev1.ServiceWatchEvent] {
			cl := corev1.NewServicesClient(c)
			return lister[*corev1.Service, *corev1.ServiceWatchEvent]{
				list: func(ctx context.Context, r *metav1.ListRequest) ([]*corev1.Service, string, error) {
					l, err := cl.List(ctx, r)
					return l.GetItems(), l.GetMetadata().GetResourceVersion(), err
				},
				watch: func(ctx context.Context, r *metav1.ListRequest) (func() (*corev1.ServiceWatchEvent, error), error) {
					s, err := cl.Watch(ctx, r)
					if err != nil {
						return nil, err
					}
					return s.Recv, nil
				},
			}
		}, func(m map[string]*corev1.Service) { p.services = m }, func(k string, o *corev1.Service) {
			if o == nil {
				delete(p.services, k)
			} else {
				p.services[k] = o
			}
		})
	}()
	go func() {
		defer wg.Done()
		watchKind(ctx, p, 1, func(c grpc.ClientConnInterface) lister[*corev1.Endpoints, *corev1.EndpointsWatchEvent] {
			cl := corev1.NewEndpointsServiceClient(c)
			return lister[*corev1.Endpoints, *corev1.EndpointsWatchEvent]{
				list: func(ctx context.Context, r *metav1.ListRequest) ([]*corev1.Endpoints, string, error) {
					l, err := cl.List(ctx, r)
					return l.GetItems(), l.GetMetadata().GetResourceVersion(), err
				},
				watch: func(ctx context.Context, r *metav1.ListRequest) (func() (*corev1.EndpointsWatchEvent, error), error) {
					s, err := cl.Watch(ctx, r)
					if err != nil {
						return nil, err
					}
					return s.Recv, nil
				},
			}
		}, func(m map[string]*corev1.Endpoints) { p.endpoints = m }, func(k string, o *corev1.Endpoints) {
			if o == nil {
				delete(p.endpoints, k)
			} else {
				p.endpoints[k] = o
			}
		})
	}()
	p.syncLoop(ctx)
	wg.Wait()
	if err := p.applier.Remove(); err != nil {
		return err
	}
	p.cfg.Logger.Info("service proxy stopped; table removed", "table", p.applier.table.Name)
	return nil
}

// syncLoop applies the caches' ruleset on every wake-up, at most once per
// MinSyncInterval, retrying failures after RetryInterval. It returns when
// ctx ends.
func (p *Proxy) syncLoop(ctx context.Context) {
	var last time.Time
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-retry.C:
		}
		if wait := p.cfg.MinSyncInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		rs, ok := p.snapshot()
		if !ok {
			continue
		}
		last = time.Now()
		changed, err := p.applier.Apply(rs)
		if err != nil {
			p.cfg.Logger.Error("apply service rules", "err", err)
			retry.Reset(p.cfg.RetryInterval)
			continue
		}
		if changed {
			p.cfg.Logger.Info("service rules applied", "ports", len(rs.Ports), "took", time.Since(last))
		}
	}
}

// snapshot builds the ruleset of the caches; ok is false until both kinds
// were listed once.
func (p *Proxy) snapshot() (Ruleset, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.synced[0] || !p.synced[1] {
		return Ruleset{}, false
	}
	svcs := make([]*corev1.Service, 0, len(p.services))
	for _, s := range p.services {
		svcs = append(svcs, s)
	}
	eps := make([]*corev1.Endpoints, 0, len(p.endpoints))
	for _, e := range p.endpoints {
		eps = append(eps, e)
	}
	return Build(svcs, eps), true
}

func (p *Proxy) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// event is a generated watch event (*corev1.ServiceWatchEvent, ...).
type event[T object] interface {
	GetType() string
	GetObject() T
}

type object interface {
	GetMetadata() *metav1.ObjectMeta
}

// lister is one kind's List and Watch over one connection.
type lister[T object, E event[T]] struct {
	list  func(ctx context.Context, r *metav1.ListRequest) ([]T, string, error)
	watch func(ctx context.Context, r *metav1.ListRequest) (func() (E, error), error)
}

// watchKind keeps one kind's cache: list, replace the cache, watch from the
// list's resourceVersion applying events, and on any watch error or end list
// again (on the next connection when a call failed). A tiny informer: the
// node never imports internal/ctrl (a control-plane package). It returns
// when ctx ends. replace and set run under p.mu; set's nil means delete.
func watchKind[T object, E event[T]](ctx context.Context, p *Proxy, idx int, open func(grpc.ClientConnInterface) lister[T, E],
	replace func(map[string]T), set func(key string, obj T)) {
	kind := [2]string{"services", "endpoints"}[idx]
	var zero T
	for conn := 0; ctx.Err() == nil; conn = (conn + 1) % len(p.conns) {
		err := func() error {
			lw := open(p.conns[conn])
			items, rv, err := lw.list(ctx, &metav1.ListRequest{})
			if err != nil {
				return fmt.Errorf("list %s: %w", kind, err)
			}
			m := make(map[string]T, len(items))
			for _, o := range items {
				m[key(o)] = o
			}
			p.mu.Lock()
			replace(m)
			p.synced[idx] = true
			p.mu.Unlock()
			p.poke()
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			recv, err := lw.watch(wctx, &metav1.ListRequest{ResourceVersion: rv, Watch: true, AllowWatchBookmarks: true})
			if err != nil {
				return fmt.Errorf("watch %s: %w", kind, err)
			}
			for {
				ev, err := recv()
				if err != nil {
					return fmt.Errorf("watch %s: %w", kind, err)
				}
				switch ev.GetType() {
				case "ADDED", "MODIFIED", "DELETED":
				case "BOOKMARK":
					continue
				default:
					return fmt.Errorf("watch %s: event %q", kind, ev.GetType())
				}
				o := ev.GetObject()
				p.mu.Lock()
				if ev.GetType() == "DELETED" {
					set(key(o), zero)
				} else {
					set(key(o), o)
				}
				p.mu.Unlock()
				p.poke()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		p.cfg.Logger.Debug("service proxy relists", "kind", kind, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.cfg.RetryInterval):
		}
	}
}

func key(o object) string {
	return o.GetMetadata().GetNamespace() + "/" + o.GetMetadata().GetName()
}
