package fsm

import (
	"fmt"
	"strconv"

	"github.com/hashicorp/go-memdb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// ServiceAllocations returns the allocation keys a Service holds: each ClusterIP
// ("clusterIP/10.96.0.10") and each NodePort ("nodePort/30080"). Headless services
// ("None") hold no address.
func ServiceAllocations(svc *corev1.Service) []string {
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	ips := svc.GetSpec().GetClusterIPs()
	if len(ips) == 0 && svc.GetSpec().GetClusterIP() != "" {
		ips = []string{svc.GetSpec().GetClusterIP()}
	}
	for _, ip := range ips {
		if ip != "" && ip != "None" {
			add("clusterIP/" + ip)
		}
	}
	for _, p := range svc.GetSpec().GetPorts() {
		if p.GetNodePort() != 0 {
			add("nodePort/" + strconv.Itoa(int(p.GetNodePort())))
		}
	}
	return keys
}

// allocateService makes svc the holder of its allocations, releasing the ones its
// previous version held and no longer does. It fails, changing nothing, when another
// Service holds one of them.
func allocateService(txn *memdb.Txn, svc *corev1.Service) error {
	holder := svc.GetMetadata().GetNamespace() + "/" + svc.GetMetadata().GetName()
	keys := ServiceAllocations(svc)
	for _, k := range keys {
		raw, err := txn.First(tableAllocs, "id", k)
		if err != nil {
			return fmt.Errorf("lookup allocation %s: %w", k, err)
		}
		if raw != nil && raw.(*alloc).Holder != holder {
			what, value := splitAllocKey(k)
			return &AllocatedError{What: what, Value: value, Holder: raw.(*alloc).Holder}
		}
	}
	if _, err := txn.DeleteAll(tableAllocs, "holder", holder); err != nil {
		return fmt.Errorf("release allocations of %s: %w", holder, err)
	}
	for _, k := range keys {
		if err := txn.Insert(tableAllocs, &alloc{Key: k, Holder: holder}); err != nil {
			return fmt.Errorf("allocate %s: %w", k, err)
		}
	}
	return nil
}

func splitAllocKey(k string) (what, value string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}
