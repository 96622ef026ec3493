package ctrl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// LoopsConfig configures every leader-run loop.
type LoopsConfig struct {
	Scheduler     SchedulerConfig
	PodCIDRs      PodCIDRs
	NodeLifecycle NodeLifecycleConfig
	Clock         Clock
	Logger        *slog.Logger
}

// DefaultLoopsConfig returns the control plane's defaults.
func DefaultLoopsConfig() LoopsConfig {
	return LoopsConfig{Scheduler: DefaultSchedulerConfig(), PodCIDRs: DefaultPodCIDRs(),
		NodeLifecycle: DefaultNodeLifecycleConfig(), Clock: RealClock(), Logger: slog.Default()}
}

// Validate checks the settings of every loop.
func (c LoopsConfig) Validate() error {
	if c.Clock == nil || c.Logger == nil {
		return errors.New("loops: clock and logger are required")
	}
	return errors.Join(c.Scheduler.Validate(), c.PodCIDRs.Validate(), c.NodeLifecycle.Validate())
}

// RunLoops runs the scheduler and the controllers against the API behind conn
// until ctx ends (the leadership term ends), and returns when all of them have
// stopped. They hold no state across terms: each term starts from a fresh list.
func RunLoops(ctx context.Context, conn grpc.ClientConnInterface, cfg LoopsConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// One informer per kind, shared by every loop.
	icfg := DefaultInformerConfig()
	icfg.Clock, icfg.Logger = cfg.Clock, cfg.Logger.With("loop", "informers")
	informers, err := NewInformers(conn, icfg)
	if err != nil {
		return err
	}
	scfg := cfg.Scheduler
	scfg.Clock, scfg.Logger = cfg.Clock, cfg.Logger.With("loop", "scheduler")
	s, err := NewScheduler(conn, scfg)
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	s.UseInformers(informers)
	ipam := NewNodeIPAM(conn, cfg.PodCIDRs, cfg.Clock, cfg.Logger.With("loop", "nodeipam"))
	ipam.UseInformers(informers)
	workloads, err := NewWorkloads(conn, cfg.Clock, cfg.Logger.With("loop", "workloads"))
	if err != nil {
		return fmt.Errorf("workload controllers: %w", err)
	}
	workloads.UseInformers(informers)
	gc := NewGarbageCollector(conn, informers, cfg.Clock, cfg.Logger.With("loop", "gc"))
	nl, err := NewNodeLifecycle(conn, cfg.NodeLifecycle, cfg.Clock, cfg.Logger.With("loop", "nodelifecycle"))
	if err != nil {
		return fmt.Errorf("node lifecycle: %w", err)
	}
	nl.UseInformers(informers)
	ep := NewEndpoints(conn, cfg.Clock, cfg.Logger.With("loop", "endpoints"))
	ep.UseInformers(informers)
	nsc := NewNamespaceController(conn, cfg.Clock, cfg.Logger.With("loop", "namespaces"))
	nsc.UseInformers(informers)
	sets, err := NewSets(conn, cfg.Clock, cfg.Logger.With("loop", "sets"))
	if err != nil {
		return fmt.Errorf("daemonset and statefulset controllers: %w", err)
	}
	sets.UseInformers(informers)
	vb := NewVolumeBinder(conn, cfg.Clock, cfg.Logger.With("loop", "volumes"))
	vb.UseInformers(informers)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return informers.Run(ctx) })
	for _, loop := range []interface{ Run(context.Context) error }{s, ipam, workloads, gc, nl, ep, nsc, sets, vb} {
		g.Go(func() error { return loop.Run(ctx) })
	}
	return g.Wait()
}
