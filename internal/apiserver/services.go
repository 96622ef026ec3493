package apiserver

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/internal/fsm"
)

var serviceTypes = sets.New("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")

func init() {
	strategies["Service"] = strategy{
		name: apivalidation.NameIsDNS1035Label,
		prepareCreate: func(obj fsm.Object) {
			obj.(*corev1.Service).Status = &corev1.ServiceStatus{LoadBalancer: &corev1.LoadBalancerStatus{}}
		},
		defaults: defaultService,
		validate: validateService,
		allocate: allocateService,
		supported: prefixed("spec.", []string{
			"ports", "selector", "clusterIP", "clusterIPs", "type", "externalName",
			"sessionAffinity", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
			"externalTrafficPolicy", "publishNotReadyAddresses",
		}),
	}
}

func defaultService(obj fsm.Object) {
	svc := obj.(*corev1.Service)
	if svc.Spec == nil {
		svc.Spec = &corev1.ServiceSpec{}
	}
	s := svc.Spec
	if s.Type == "" {
		s.Type = "ClusterIP"
	}
	if s.Type == "ExternalName" {
		return
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = "None"
	}
	for _, p := range s.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		if p.TargetPort == nil {
			p.TargetPort = structpb.NewNumberValue(float64(p.Port))
		}
	}
	if s.InternalTrafficPolicy == nil {
		v := "Cluster"
		s.InternalTrafficPolicy = &v
	}
	if (s.Type == "NodePort" || s.Type == "LoadBalancer") && s.ExternalTrafficPolicy == "" {
		s.ExternalTrafficPolicy = "Cluster"
	}
	if len(s.IpFamilies) == 0 && s.ClusterIP != "None" {
		s.IpFamilies = []string{"IPv4"}
	}
	if s.IpFamilyPolicy == nil {
		v := "SingleStack"
		s.IpFamilyPolicy = &v
	}
}

func validateService(obj, old fsm.Object) field.ErrorList {
	svc := obj.(*corev1.Service)
	s := svc.GetSpec()
	path := field.NewPath("spec")
	var errs field.ErrorList
	if !serviceTypes.Has(s.GetType()) {
		errs = append(errs, field.NotSupported(path.Child("type"), s.GetType(), sets.List(serviceTypes)))
		return errs
	}
	switch {
	case s.GetType() == "ExternalName":
		if s.GetClusterIP() != "" {
			errs = append(errs, field.Forbidden(path.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		if s.GetExternalName() == "" {
			errs = append(errs, field.Required(path.Child("externalName"), ""))
		}
		for _, msg := range validation.IsDNS1123Subdomain(s.GetExternalName()) {
			errs = append(errs, field.Invalid(path.Child("externalName"), s.GetExternalName(), msg))
		}
	case len(s.GetPorts()) == 0 && s.GetClusterIP() != "None":
		errs = append(errs, field.Required(path.Child("ports"), ""))
	}
	if ip := s.GetClusterIP(); ip != "" && ip != "None" {
		if _, err := netip.ParseAddr(ip); err != nil {
			errs = append(errs, field.Invalid(path.Child("clusterIP"), ip, "must be a valid IP address or None"))
		}
	}
	if s.GetClusterIP() == "None" && (s.GetType() == "NodePort" || s.GetType() == "LoadBalancer") {
		errs = append(errs, field.Invalid(path.Child("type"), s.GetType(), "may not be used with a headless service (clusterIP: None)"))
	}
	portNames := sets.New[string]()
	for i, p := range s.GetPorts() {
		pp := path.Child("ports").Index(i)
		if len(s.GetPorts()) > 1 && p.GetName() == "" {
			errs = append(errs, field.Required(pp.Child("name"), "when multiple ports are specified, each must be named"))
		}
		if p.GetName() != "" {
			errs = append(errs, validateDNSLabel(p.GetName(), pp.Child("name"))...)
			if portNames.Has(p.GetName()) {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.GetName()))
			}
			portNames.Insert(p.GetName())
		}
		for _, msg := range validation.IsValidPortNum(int(p.GetPort())) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.GetPort(), msg))
		}
		if !protocols.Has(p.GetProtocol()) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.GetProtocol(), sets.List(protocols)))
		}
		if p.GetTargetPort() != nil {
			errs = append(errs, validatePortNumOrName(p.GetTargetPort(), pp.Child("targetPort"))...)
		}
		if p.GetNodePort() != 0 && s.GetType() != "NodePort" && s.GetType() != "LoadBalancer" {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", s.GetType())))
		}
	}
	for k, v := range s.GetSelector() {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(path.Child("selector"), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(path.Child("selector").Key(k), v, msg))
		}
	}
	if s.GetSessionAffinity() != "" && s.GetSessionAffinity() != "None" && s.GetSessionAffinity() != "ClientIP" {
		errs = append(errs, field.NotSupported(path.Child("sessionAffinity"), s.GetSessionAffinity(), []string{"ClientIP", "None"}))
	}
	if old != nil {
		o := old.(*corev1.Service).GetSpec()
		// An empty clusterIP on update keeps the allocated one (see allocateService).
		if o.GetClusterIP() != "" && s.GetClusterIP() != "" && s.GetType() != "ExternalName" && o.GetType() != "ExternalName" && s.GetClusterIP() != o.GetClusterIP() {
			errs = append(errs, field.Invalid(path.Child("clusterIP"), s.GetClusterIP(), "field is immutable"))
		}
	}
	return errs
}

// allocator hands out ClusterIPs and NodePorts on the leader. Its decisions are
// proposed inside the Service; the FSM rejects a value another Service already
// holds, so a stale decision fails instead of double-allocating.
type allocator struct {
	cidr    netip.Prefix
	portMin int
	portMax int
	mu      sync.Mutex          // guards pending
	pending map[string]struct{} // keys handed out whose proposals are in flight
}

func newAllocator(cidr netip.Prefix, portMin, portMax int) *allocator {
	return &allocator{cidr: cidr.Masked(), portMin: portMin, portMax: portMax, pending: map[string]struct{}{}}
}

// release forgets in-flight keys once their proposal finished either way.
func (a *allocator) release(keys []string) {
	a.mu.Lock()
	for _, k := range keys {
		delete(a.pending, k)
	}
	a.mu.Unlock()
}

func (a *allocator) taken(v *fsm.View, key, holder string) bool {
	if _, ok := a.pending[key]; ok {
		return true
	}
	h, ok := v.Allocated(key)
	return ok && h != holder
}

// allocateService fills in the ClusterIP and NodePorts a Service needs, keeping what
// old had, and checks the values the user asked for. It returns the keys it reserved
// (to release once proposed).
func allocateService(a *allocator, v *fsm.View, obj, old fsm.Object) ([]string, field.ErrorList) {
	svc := obj.(*corev1.Service)
	s := svc.Spec
	holder := svc.GetMetadata().GetNamespace() + "/" + svc.GetMetadata().GetName()
	var oldSpec *corev1.ServiceSpec
	if old != nil {
		oldSpec = old.(*corev1.Service).GetSpec()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var reserved []string
	reserve := func(k string) {
		a.pending[k] = struct{}{}
		reserved = append(reserved, k)
	}
	var errs field.ErrorList
	path := field.NewPath("spec")

	if s.Type == "ExternalName" {
		s.ClusterIP, s.ClusterIPs = "", nil
	} else {
		if s.ClusterIP == "" && oldSpec.GetClusterIP() != "" && oldSpec.GetType() != "ExternalName" {
			s.ClusterIP = oldSpec.GetClusterIP()
		}
		switch ip := s.ClusterIP; {
		case ip == "None":
		case ip == "":
			got, ok := a.pickIP(v, holder)
			if !ok {
				errs = append(errs, field.InternalError(path.Child("clusterIP"), fmt.Errorf("no ClusterIP left in %s", a.cidr)))
			} else {
				s.ClusterIP = got
				reserve("clusterIP/" + got)
			}
		default:
			addr, err := netip.ParseAddr(ip)
			switch {
			case err != nil:
			case !a.cidr.Contains(addr):
				errs = append(errs, field.Invalid(path.Child("clusterIP"), ip, fmt.Sprintf("provided IP is not in the valid range. The range of valid IPs is %s", a.cidr)))
			case oldSpec.GetClusterIP() != ip && a.taken(v, "clusterIP/"+ip, holder):
				errs = append(errs, field.Invalid(path.Child("clusterIP"), ip, "provided IP is already allocated"))
			case oldSpec.GetClusterIP() != ip:
				reserve("clusterIP/" + ip)
			}
		}
		if s.ClusterIP != "" {
			s.ClusterIPs = []string{s.ClusterIP}
		}
	}

	if s.Type != "NodePort" && s.Type != "LoadBalancer" {
		return reserved, errs
	}
	oldPorts := map[string]int32{}
	for _, p := range oldSpec.GetPorts() {
		if p.GetNodePort() != 0 {
			oldPorts[p.GetProtocol()+"/"+strconv.Itoa(int(p.GetPort()))] = p.GetNodePort()
		}
	}
	used := map[int32]bool{}
	for i, p := range s.Ports {
		pp := path.Child("ports").Index(i).Child("nodePort")
		if p.NodePort == 0 {
			if prev, ok := oldPorts[p.Protocol+"/"+strconv.Itoa(int(p.Port))]; ok && !used[prev] {
				p.NodePort = prev
			}
		}
		if p.NodePort == 0 {
			continue
		}
		key := "nodePort/" + strconv.Itoa(int(p.NodePort))
		switch {
		case int(p.NodePort) < a.portMin || int(p.NodePort) > a.portMax:
			errs = append(errs, field.Invalid(pp, p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portMin, a.portMax)))
		case used[p.NodePort]:
			// The same port twice in one Service (e.g. TCP and UDP) is allowed.
		case a.taken(v, key, holder):
			errs = append(errs, field.Invalid(pp, p.NodePort, "provided port is already allocated"))
		default:
			reserve(key)
		}
		used[p.NodePort] = true
	}
	for i, p := range s.Ports {
		if p.NodePort != 0 {
			continue
		}
		port, ok := a.pickPort(v, holder, used)
		if !ok {
			errs = append(errs, field.InternalError(path.Child("ports").Index(i).Child("nodePort"), fmt.Errorf("no node port left in %d-%d", a.portMin, a.portMax)))
			continue
		}
		p.NodePort = port
		used[port] = true
		reserve("nodePort/" + strconv.Itoa(int(port)))
	}
	return reserved, errs
}

// pickIP returns a free address of the service CIDR, never the network address or
// the first host (kept for the API's own service, as in Kubernetes).
func (a *allocator) pickIP(v *fsm.View, holder string) (string, bool) {
	bits := a.cidr.Addr().BitLen() - a.cidr.Bits()
	if bits > 20 {
		bits = 20
	}
	size := 1 << bits
	if size < 4 {
		return "", false
	}
	start := 2 + rand.IntN(size-3)
	base := a.cidr.Addr()
	for i := 0; i < size-3; i++ {
		off := 2 + (start-2+i)%(size-3)
		if ip := addrAdd(base, off).String(); !a.taken(v, "clusterIP/"+ip, holder) {
			return ip, true
		}
	}
	return "", false
}

func (a *allocator) pickPort(v *fsm.View, holder string, used map[int32]bool) (int32, bool) {
	n := a.portMax - a.portMin + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		port := int32(a.portMin + (start+i)%n)
		if !used[port] && !a.taken(v, "nodePort/"+strconv.Itoa(int(port)), holder) {
			return port, true
		}
	}
	return 0, false
}

// addrAdd returns base + off.
func addrAdd(base netip.Addr, off int) netip.Addr {
	b := base.As16()
	carry := off
	for i := 15; i >= 0 && carry > 0; i-- {
		sum := int(b[i]) + carry
		b[i] = byte(sum)
		carry = sum >> 8
	}
	a := netip.AddrFrom16(b)
	if base.Is4() {
		a = a.Unmap()
	}
	return a
}
