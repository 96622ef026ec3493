package ctrl

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

// Labels of the Endpoints objects this controller keeps (Kubernetes' own).
const (
	// EndpointsManagedByLabel marks an Endpoints object as kept by this
	// controller, with value EndpointsControllerName. Only such objects are
	// ever deleted; Endpoints without it belong to a user or another
	// controller (typically those of a Service without selector).
	EndpointsManagedByLabel = "endpoints.kubernetes.io/managed-by"
	EndpointsControllerName = "endpoint-controller"
	// epHeadlessLabel marks the Endpoints of a headless Service.
	epHeadlessLabel = "service.kubernetes.io/headless"
)

// EndpointsFor returns the Endpoints object svc should have, given the pods
// of svc's namespace (in any order, unfiltered): svc's namespace and name, its
// labels plus EndpointsManagedByLabel (and service.kubernetes.io/headless for
// clusterIP None), and the subsets of EndpointSubsetsFor. ok is false when the
// controller keeps no Endpoints for svc: it has no selector, is of type
// ExternalName, or is being deleted. Pure; inputs are never modified.
func EndpointsFor(svc *corev1.Service, pods []*corev1.Pod) (*corev1.Endpoints, bool) {
	spec := svc.GetSpec()
	if len(spec.GetSelector()) == 0 || spec.GetType() == "ExternalName" || svc.GetMetadata().GetDeletionTimestamp() != nil {
		return nil, false
	}
	md := svc.GetMetadata()
	labels := maps.Clone(md.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	delete(labels, epHeadlessLabel)
	labels[EndpointsManagedByLabel] = EndpointsControllerName
	if spec.GetClusterIP() == "None" {
		labels[epHeadlessLabel] = ""
	}
	return &corev1.Endpoints{ApiVersion: "v1", Kind: "Endpoints",
		Metadata: &metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), Labels: labels},
		Subsets:  EndpointSubsetsFor(svc, pods)}, true
}

// EndpointSubsetsFor computes the subsets of svc's Endpoints from pods, as
// Kubernetes' endpoints controller does:
//
//   - Pods count when they are in svc's namespace, match its selector, are
//     not terminal (Succeeded, Failed), have an IP of the service's IP family
//     (status.podIPs, else status.podIP) and are not being deleted — unless
//     publishNotReadyAddresses is set, which keeps pods being deleted.
//   - Ready pods go in addresses, the others in notReadyAddresses; with
//     publishNotReadyAddresses every pod goes in addresses. Each address has
//     the IP, nodeName, targetRef (kind Pod, namespace, name, uid) and, for a
//     pod whose spec.subdomain names the service, its spec.hostname.
//   - Each service port becomes an endpoint port (name, protocol,
//     appProtocol) whose number is the targetPort: a number as is, a name
//     looked up in the pod's container ports of the same protocol. A pod
//     without a named port is left out of that port only, so pods are grouped
//     into one subset per distinct resolved port list, and a pod that
//     resolves no port at all is left out. (Kubernetes repacks instead by
//     address set, so a pod may appear in several subsets there; here each
//     pod appears once. Both describe the same address x port pairs.)
//   - A service without ports gets port-less addresses only when headless.
//
// The result is deterministic: addresses sorted by IP (then pod), ports in
// the service's order, subsets by their ports; unchanged inputs give an equal
// result, so the controller writes nothing.
func EndpointSubsetsFor(svc *corev1.Service, pods []*corev1.Pod) []*corev1.EndpointSubset {
	spec := svc.GetSpec()
	selector := spec.GetSelector()
	if len(selector) == 0 {
		return nil
	}
	ns, publish := svc.GetMetadata().GetNamespace(), spec.GetPublishNotReadyAddresses()
	headless := spec.GetClusterIP() == "None"
	if len(spec.GetPorts()) == 0 && !headless {
		return nil
	}
	type group struct {
		ports           []*corev1.EndpointPort
		ready, notReady []*corev1.EndpointAddress
	}
	groups := map[string]*group{}
	for _, p := range pods {
		md := p.GetMetadata()
		if md.GetNamespace() != ns || !hasLabels(md.GetLabels(), selector) {
			continue
		}
		if ph := p.GetStatus().GetPhase(); ph == podSucceeded || ph == podFailed {
			continue
		}
		if md.GetDeletionTimestamp() != nil && !publish {
			continue
		}
		ip := epPodIP(svc, p)
		if ip == "" {
			continue
		}
		var ports []*corev1.EndpointPort
		for _, sp := range spec.GetPorts() {
			n, ok := epTargetPort(sp, p)
			if !ok {
				continue
			}
			ports = append(ports, &corev1.EndpointPort{Name: sp.GetName(), Port: n, Protocol: epProtocol(sp.GetProtocol()), AppProtocol: sp.AppProtocol})
		}
		if len(ports) == 0 && len(spec.GetPorts()) > 0 {
			continue
		}
		addr := &corev1.EndpointAddress{Ip: ip,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid()}}
		if n := p.GetSpec().GetNodeName(); n != "" {
			addr.NodeName = proto.String(n)
		}
		if h := p.GetSpec().GetHostname(); h != "" && p.GetSpec().GetSubdomain() == svc.GetMetadata().GetName() {
			addr.Hostname = h
		}
		key := epPortsKey(ports)
		g := groups[key]
		if g == nil {
			g = &group{ports: ports}
			groups[key] = g
		}
		if publish || IsPodReady(p) {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := slices.Sorted(maps.Keys(groups))
	out := make([]*corev1.EndpointSubset, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		slices.SortFunc(g.ready, epCompareAddress)
		slices.SortFunc(g.notReady, epCompareAddress)
		out = append(out, &corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}

// epPodIP returns p's IP of svc's IP family (the first of spec.ipFamilies;
// without one, that of its clusterIP, or for a headless service that of the
// pod's IP), or "".
func epPodIP(svc *corev1.Service, p *corev1.Pod) string {
	st := p.GetStatus()
	var family string
	switch fams := svc.GetSpec().GetIpFamilies(); {
	case len(fams) > 0:
		family = fams[0]
	case svc.GetSpec().GetClusterIP() != "" && svc.GetSpec().GetClusterIP() != "None":
		family = epFamily(svc.GetSpec().GetClusterIP())
	default:
		family = epFamily(st.GetPodIP())
	}
	candidates := make([]string, 0, len(st.GetPodIPs())+1)
	for _, ip := range st.GetPodIPs() {
		candidates = append(candidates, ip.GetIp())
	}
	candidates = append(candidates, st.GetPodIP())
	for _, ip := range candidates {
		if ip != "" && epFamily(ip) == family {
			return ip
		}
	}
	return ""
}

func epFamily(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		return "IPv6"
	}
	return "IPv4"
}

// epTargetPort resolves sp's targetPort for p (Kubernetes' FindPort): a
// number is used as is; a name names one of p's containers' ports with sp's
// protocol. Without targetPort (the API server defaults it), the service port.
func epTargetPort(sp *corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	switch v := sp.GetTargetPort().GetKind().(type) {
	case nil:
		return sp.GetPort(), sp.GetPort() > 0
	case *structpb.Value_NumberValue:
		n := int32(v.NumberValue)
		return n, float64(n) == v.NumberValue && n > 0
	case *structpb.Value_StringValue:
		name, protocol := v.StringValue, epProtocol(sp.GetProtocol())
		for _, c := range p.GetSpec().GetContainers() {
			for _, cp := range c.GetPorts() {
				if cp.GetName() == name && epProtocol(cp.GetProtocol()) == protocol {
					return cp.GetContainerPort(), true
				}
			}
		}
	}
	return 0, false
}

// epProtocol defaults an empty protocol to TCP.
func epProtocol(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

func epPortsKey(ports []*corev1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%05d;", p.GetName(), p.GetProtocol(), p.GetPort())
	}
	return b.String()
}

// epCompareAddress orders addresses by IP (numerically when both parse),
// then by pod namespace and name.
func epCompareAddress(a, b *corev1.EndpointAddress) int {
	x, errX := netip.ParseAddr(a.GetIp())
	y, errY := netip.ParseAddr(b.GetIp())
	c := 0
	if errX == nil && errY == nil {
		c = x.Compare(y)
	} else {
		c = cmp.Compare(a.GetIp(), b.GetIp())
	}
	if c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.GetTargetRef().GetNamespace(), b.GetTargetRef().GetNamespace()),
		cmp.Compare(a.GetTargetRef().GetName(), b.GetTargetRef().GetName()))
}

// epSame reports whether cur already is what want asks for (labels and
// subsets; other metadata is left as it is).
func epSame(cur, want *corev1.Endpoints) bool {
	return mapsEqual(cur.GetMetadata().GetLabels(), want.GetMetadata().GetLabels()) &&
		slices.EqualFunc(cur.GetSubsets(), want.GetSubsets(), func(a, b *corev1.EndpointSubset) bool { return proto.Equal(a, b) })
}

// epManaged reports whether this controller keeps ep.
func epManaged(ep *corev1.Endpoints) bool {
	return ep.GetMetadata().GetLabels()[EndpointsManagedByLabel] == EndpointsControllerName
}

// EndpointsController keeps, for every Service with a selector, an Endpoints
// object of the same name listing the service's pods (EndpointsFor). It runs
// on the Raft leader: informers on Services, pods and Endpoints feed a work
// queue of service keys; workers create the Endpoints, update it conditioned
// on the resourceVersion read, or delete it (conditioned on UID and
// resourceVersion) when the service is gone, lost its selector or became
// ExternalName — only if the object carries EndpointsManagedByLabel, so
// Endpoints a user keeps for a selector-less Service are never touched. An
// Endpoints object without the label whose Service has a selector is taken
// over (labelled and rewritten), as Kubernetes does. The API server creates
// no Endpoints by itself.
type EndpointsController struct {
	conn    grpc.ClientConnInterface
	clock   Clock
	logger  *slog.Logger
	workers int
	shared  *Informers // nil: Run uses informers of its own
}

// UseInformers makes Run read through f, which the caller runs, instead of
// informers of its own. Call it before Run.
func (e *EndpointsController) UseInformers(f *Informers) { e.shared = f }

// NewEndpoints returns the Endpoints controller for the API behind conn.
func NewEndpoints(conn grpc.ClientConnInterface, clock Clock, logger *slog.Logger) *EndpointsController {
	return &EndpointsController{conn: conn, clock: clock, logger: logger, workers: 4}
}

// epRun is the state of one Run.
type epRun struct {
	*EndpointsController
	eps    corev1.EndpointsServiceClient
	svcInf *Informer[*corev1.Service]
	podInf *Informer[*corev1.Pod]
	epInf  *Informer[*corev1.Endpoints]
	q      *Queue
	events *EventRecorder
}

// Run keeps Endpoints until ctx ends, then returns nil; it returns an error
// only when it cannot start. Run may be called again after it returned.
func (e *EndpointsController) Run(ctx context.Context) error {
	r := &epRun{EndpointsController: e, eps: corev1.NewEndpointsServiceClient(e.conn),
		events: NewEventRecorder(corev1.NewEventsClient(e.conn), "endpoint-controller", e.clock, e.logger)}
	g, ctx := errgroup.WithContext(ctx)
	f, err := informersFor(ctx, g, e.shared, e.conn, e.clock, e.logger)
	if err != nil {
		return err
	}
	r.svcInf, r.podInf, r.epInf = f.Services(), f.Pods(), f.Endpoints()
	qcfg := DefaultQueueConfig()
	qcfg.Clock = e.clock
	if r.q, err = NewQueue(qcfg); err != nil {
		return err
	}
	enqSvc := func(s *corev1.Service) { r.q.Add(KeyOf(s)) }
	_ = r.svcInf.AddHandler(HandlerFuncs[*corev1.Service]{Add: enqSvc, Update: func(_, s *corev1.Service) { enqSvc(s) }, Delete: enqSvc})
	enqEp := func(ep *corev1.Endpoints) { r.q.Add(KeyOf(ep)) }
	_ = r.epInf.AddHandler(HandlerFuncs[*corev1.Endpoints]{Add: enqEp, Update: func(_, ep *corev1.Endpoints) { enqEp(ep) }, Delete: enqEp})
	_ = r.podInf.AddHandler(HandlerFuncs[*corev1.Pod]{
		Add: func(p *corev1.Pod) { r.podChanged(nil, p) },
		Update: func(old, p *corev1.Pod) {
			if epPodRelevantChange(old, p) {
				r.podChanged(old, p)
			}
		},
		Delete: func(p *corev1.Pod) { r.podChanged(nil, p) },
	})

	g.Go(func() error { return r.events.Run(ctx) })
	g.Go(func() error {
		for _, s := range []interface{ WaitSynced(context.Context) error }{r.svcInf, r.podInf, r.epInf} {
			if err := s.WaitSynced(ctx); err != nil {
				return nil
			}
		}
		var wg sync.WaitGroup
		for range e.workers {
			wg.Add(1)
			go func() { defer wg.Done(); r.q.Work(ctx, r.logger, r.syncOrReport) }()
		}
		wg.Wait()
		return nil
	})
	return g.Wait()
}

// podChanged queues the services selecting p now or before (old may be nil).
func (r *epRun) podChanged(old, p *corev1.Pod) {
	for _, s := range r.svcInf.ListNamespace(p.GetMetadata().GetNamespace()) {
		sel := s.GetSpec().GetSelector()
		if len(sel) == 0 {
			continue
		}
		if hasLabels(p.GetMetadata().GetLabels(), sel) || (old != nil && hasLabels(old.GetMetadata().GetLabels(), sel)) {
			r.q.Add(KeyOf(s))
		}
	}
}

// epPodRelevantChange reports whether a pod update may change any Endpoints.
func epPodRelevantChange(old, p *corev1.Pod) bool {
	om, pm := old.GetMetadata(), p.GetMetadata()
	os, ps := old.GetStatus(), p.GetStatus()
	if om.GetUid() != pm.GetUid() || !mapsEqual(om.GetLabels(), pm.GetLabels()) ||
		(om.GetDeletionTimestamp() == nil) != (pm.GetDeletionTimestamp() == nil) ||
		os.GetPodIP() != ps.GetPodIP() || os.GetPhase() != ps.GetPhase() || IsPodReady(old) != IsPodReady(p) ||
		!slices.EqualFunc(os.GetPodIPs(), ps.GetPodIPs(), func(a, b *corev1.PodIP) bool { return a.GetIp() == b.GetIp() }) {
		return true
	}
	osp, psp := old.GetSpec(), p.GetSpec()
	if osp.GetNodeName() != psp.GetNodeName() || osp.GetHostname() != psp.GetHostname() || osp.GetSubdomain() != psp.GetSubdomain() {
		return true
	}
	return !slices.EqualFunc(osp.GetContainers(), psp.GetContainers(), func(a, b *corev1.Container) bool {
		return slices.EqualFunc(a.GetPorts(), b.GetPorts(), func(x, y *corev1.ContainerPort) bool { return proto.Equal(x, y) })
	})
}

// syncOrReport is sync, with a FailedToUpdateEndpoint event on the Service
// when it fails for another reason than a conflict.
func (r *epRun) syncOrReport(ctx context.Context, key string) (time.Duration, error) {
	err := r.sync(ctx, key)
	if err != nil && ctx.Err() == nil && status.Code(err) != codes.Aborted {
		if svc, ok := r.svcInf.GetByKey(key); ok {
			r.events.Record(Ref("Service", "v1", svc.GetMetadata()), "Warning", "FailedToUpdateEndpoint",
				fmt.Sprintf("Failed to update endpoint %s: %v", key, err))
		}
	}
	return 0, err
}

// sync brings the Endpoints of one service key in line with the caches.
func (r *epRun) sync(ctx context.Context, key string) error {
	ns, name := SplitKey(key)
	cur, have := r.epInf.GetByKey(key)
	var want *corev1.Endpoints
	ok := false
	if svc, found := r.svcInf.GetByKey(key); found {
		want, ok = EndpointsFor(svc, r.podInf.ListNamespace(ns))
	}
	switch {
	case !ok:
		if !have || !epManaged(cur) {
			return nil
		}
		md := cur.GetMetadata()
		_, err := r.eps.Delete(ctx, &metav1.DeleteRequest{Namespace: ns, Name: name, Body: &metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{Uid: proto.String(md.GetUid()), ResourceVersion: proto.String(md.GetResourceVersion())}}})
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("delete endpoints %s: %w", key, err)
		}
		if err == nil {
			r.logger.Debug("deleted endpoints", "endpoints", key)
		}
		return nil
	case !have:
		if _, err := r.eps.Create(ctx, &corev1.CreateEndpointsRequest{Namespace: ns, Body: want}); err != nil {
			return fmt.Errorf("create endpoints %s: %w", key, err)
		}
		return nil
	case epSame(cur, want):
		return nil
	default:
		next := proto.Clone(cur).(*corev1.Endpoints)
		next.Metadata.Labels, next.Subsets = want.GetMetadata().GetLabels(), want.GetSubsets()
		if _, err := r.eps.Update(ctx, &corev1.UpdateEndpointsRequest{Namespace: ns, Name: name, Body: next}); err != nil {
			return fmt.Errorf("update endpoints %s: %w", key, err)
		}
		return nil
	}
}
