package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/svcproxy"
)

// TestServiceClusterIPReachesPods runs a Deployment of 2 podapp replicas and
// a ClusterIP Service in front of them; the node agent's service proxy makes
// ClusterIP:80 answer from this host, from both pods. Traffic to the
// ClusterIP is DNATed in this host's output hook to pod IPs on the test's
// bridge: nothing leaves the machine (checked before the first request).
func TestServiceClusterIPReachesPods(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the real node agent needs root")
	}
	// Registered before realSetup's cleanups, so it runs after the node
	// agent stopped (SIGTERM): the agent must have removed its table; this
	// removes it anyway if it was left.
	t.Cleanup(func() {
		conn, err := nftables.New()
		if err != nil {
			t.Error(err)
			return
		}
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: svcproxy.DefaultTable}
		if _, err := conn.ListTableOfFamily(table.Name, table.Family); err != nil {
			return // gone, as it should be
		}
		t.Errorf("table ip %s left after the node agent stopped; removing it", table.Name)
		conn.DelTable(table)
		if err := conn.Flush(); err != nil {
			t.Errorf("remove table ip %s: %v", table.Name, err)
		}
	})
	c, image, _, _, _ := realSetup(t)
	// The Deployment goes before realSetup's cleanup deletes the pods (its
	// ReplicaSet would recreate them).
	t.Cleanup(func() { c.ctl("delete", "deployment", "web") })
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: app
        image: %s
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, image)
	if out, errOut, err := c.ctlRun(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pods := corev1.NewPodsClient(c.conn(0))
	names := map[string]netip.Addr{}
	c.eventually(120*time.Second, "2 pods Running and Ready", func() error {
		list, err := pods.List(ctx, &metav1.ListRequest{Namespace: "default", LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		clear(names)
		for _, p := range list.GetItems() {
			if ip, err := netip.ParseAddr(p.GetStatus().GetPodIP()); err == nil && p.GetStatus().GetPhase() == "Running" && podReady(p) {
				names[p.GetMetadata().GetName()] = ip
			}
		}
		if len(names) != 2 {
			return fmt.Errorf("%d ready", len(names))
		}
		return nil
	})
	svc, err := corev1.NewServicesClient(c.conn(0)).Get(ctx, &metav1.GetRequest{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	cip, err := netip.ParseAddr(svc.GetSpec().GetClusterIP())
	if err != nil || !netip.MustParsePrefix("10.96.0.0/12").Contains(cip) {
		t.Fatalf("clusterIP %q, want one in 10.96.0.0/12", svc.GetSpec().GetClusterIP())
	}
	// Nothing may leave the machine: every endpoint is on the pod bridge, and
	// the proxy's table DNATs the ClusterIP to exactly those endpoints before
	// the first request.
	for _, ip := range names {
		viaBridge(t, ip)
	}
	c.eventually(30*time.Second, "the proxy's rules DNAT "+cip.String()+" to both pods", func() error {
		return dnatTargets(cip, names)
	})
	got := map[string]int{}
	for range 30 {
		body, err := httpGet("http://" + cip.String() + "/")
		if err != nil {
			t.Fatalf("GET ClusterIP: %v", err)
		}
		name, ok := strings.CutPrefix(strings.TrimSpace(body), "hello from ")
		if _, known := names[name]; !ok || !known {
			t.Fatalf("ClusterIP answered %q, want hello from one of %v", body, names)
		}
		got[name]++
	}
	if len(got) != 2 {
		t.Errorf("answers by pod: %v; want both pods", got)
	}
}

// dnatTargets checks that table ip rafter-svc exists, matches cip and
// DNATs only to the addresses of want (and to all of them).
func dnatTargets(cip netip.Addr, want map[string]netip.Addr) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: svcproxy.DefaultTable}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	matched, targets := false, map[netip.Addr]bool{}
	for _, ch := range chains {
		if ch.Table.Name != table.Name {
			continue
		}
		rules, err := conn.GetRules(table, ch)
		if err != nil {
			return err
		}
		for _, r := range rules {
			for i, e := range r.Exprs {
				if cmp, ok := e.(*expr.Cmp); ok && ch.Name == "services" && netip.AddrFrom4([4]byte(append([]byte{}, pad4(cmp.Data)...))) == cip {
					matched = true
				}
				if imm, ok := e.(*expr.Immediate); ok && strings.HasPrefix(ch.Name, "ep-default/web/") && len(imm.Data) == 4 && i+2 < len(r.Exprs) {
					if _, ok := r.Exprs[i+2].(*expr.NAT); ok {
						targets[netip.AddrFrom4([4]byte(imm.Data))] = true
					}
				}
			}
		}
	}
	if !matched {
		return fmt.Errorf("no rule for %s in table ip %s", cip, table.Name)
	}
	if len(targets) != len(want) {
		return fmt.Errorf("DNAT targets %v, want %v", targets, want)
	}
	for _, ip := range want {
		if !targets[ip] {
			return fmt.Errorf("DNAT targets %v, want %v", targets, want)
		}
	}
	return nil
}

func pad4(b []byte) []byte {
	if len(b) == 4 {
		return b
	}
	return make([]byte, 4)
}
