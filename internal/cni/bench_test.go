package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rafter-dev/rafter/internal/cni"
)

// benchPods is how many pods each iteration of BenchmarkPodCPU attaches.
const benchPods = 20

// BenchmarkPodCPU reports the CPU that Add and Del cost per pod: this
// process's (libcni, netlink) plus its reaped children's (the plugins and
// the nft they run), from getrusage. Each iteration makes benchPods netns,
// then times Add of every pod and Del of every pod (sequentially, so the
// figures do not depend on the machine's cores), then deletes the netns
// outside the measured window. The host netns is a netns of the test's own,
// as in TestPodNetworking. The sub-benchmarks are pods without and with one
// hostPort each.
//
//	sudo go test -run '^$' -bench PodCPU -benchtime 5x ./internal/cni/
func BenchmarkPodCPU(b *testing.B) {
	requireRoot(b)
	for i, ports := range []int{0, 1} {
		b.Run(fmt.Sprintf("ports=%d", ports), func(b *testing.B) {
			tc := podTest{isolated: true, cidr: netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", 20+i)), bridge: fmt.Sprintf("rftb%d", i)}
			n, _ := newNode(b, tc)
			benchPodCPU(b, n, ports)
		})
	}
}

func benchPodCPU(b *testing.B, n *cni.Network, ports int) {
	ctx := context.Background()
	var add, del cpuUse
	iter := 0
	for b.Loop() {
		refs := make([]cni.PodRef, benchPods)
		paths := make([]string, benchPods)
		for i := range refs {
			refs[i] = cni.PodRef{Namespace: "bench", Name: fmt.Sprintf("p%d", i), UID: fmt.Sprintf("uid-bench-%d-%d", iter, i)}
			var err error
			if paths[i], err = n.NewNetns(refs[i].Name); err != nil {
				b.Fatal(err)
			}
		}
		start := readCPU()
		for i, ref := range refs {
			var pm []cni.PortMapping
			if ports > 0 {
				pm = []cni.PortMapping{{HostPort: uint16(31000 + i), ContainerPort: containerPort}}
			}
			if _, err := n.Add(ctx, ref, paths[i], pm); err != nil {
				b.Fatal(err)
			}
		}
		mid := readCPU()
		for i, ref := range refs {
			if err := n.Del(ctx, ref, paths[i]); err != nil {
				b.Fatal(err)
			}
		}
		end := readCPU()
		add = add.plus(mid.minus(start))
		del = del.plus(end.minus(mid))
		for _, ref := range refs {
			mustDeleteNetns(b, n, ref.Name)
		}
		iter++
	}
	pods := float64(iter * benchPods)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / pods }
	b.ReportMetric(ms(add.self+add.children+del.self+del.children), "cpu-ms/pod")
	b.ReportMetric(ms(add.self+add.children), "add-cpu-ms/pod")
	b.ReportMetric(ms(del.self+del.children), "del-cpu-ms/pod")
	b.ReportMetric(ms(add.self+del.self), "self-cpu-ms/pod")
	b.ReportMetric(ms(add.children+del.children), "child-cpu-ms/pod")
	b.ReportMetric(ms(add.wall+del.wall), "wall-ms/pod")
}

// cpuUse is user+system CPU of this process and of its reaped children,
// and the wall time, at a point or between two points.
type cpuUse struct{ self, children, wall time.Duration }

// benchEpoch makes cpuUse.wall monotonic.
var benchEpoch = time.Now()

func readCPU() cpuUse {
	var s, c unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &s); err != nil {
		panic(err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &c); err != nil {
		panic(err)
	}
	tv := func(t unix.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return cpuUse{
		self:     tv(s.Utime) + tv(s.Stime),
		children: tv(c.Utime) + tv(c.Stime),
		wall:     time.Since(benchEpoch),
	}
}

func (a cpuUse) minus(b cpuUse) cpuUse {
	return cpuUse{a.self - b.self, a.children - b.children, a.wall - b.wall}
}

func (a cpuUse) plus(b cpuUse) cpuUse {
	return cpuUse{a.self + b.self, a.children + b.children, a.wall + b.wall}
}
