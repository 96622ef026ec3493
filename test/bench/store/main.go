// Command store compares Rafter's replicated store with etcd on the same machine:
// it starts a fresh three-peer Rafter cluster and a fresh three-member etcd cluster
// on loopback, drives both with the same number of concurrent writers of 1 KiB
// objects, and prints throughput, latency percentiles and their ratios. It builds
// nothing; `make bench-store` builds the controlplane and installs etcd first.
// See README.md for the method and how to read the output.
package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The target the verdict line checks, at the verdict concurrency.
const (
	verdictConcurrency = 256
	targetThroughput   = 1.0 // rafter/etcd ops/s at least this
	targetP99          = 2.0 // rafter/etcd p99 at most this
)

type options struct {
	controlplane, etcd string
	concurrency        []int
	duration, warmup   time.Duration
	valueSize          int
	workDir            string
	keep               bool
	rafterArgs         string
}

func main() {
	var o options
	var conc string
	fs := flag.NewFlagSet("store", flag.ExitOnError)
	fs.StringVar(&o.controlplane, "controlplane", "bin/controlplane", "path of the controlplane binary")
	fs.StringVar(&o.etcd, "etcd", "/usr/bin/etcd", "path of the etcd binary")
	fs.StringVar(&conc, "concurrency", "1,16,256", "comma-separated numbers of concurrent writers, one step each")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per step and system")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before each measured window")
	fs.IntVar(&o.valueSize, "value-size", 1024, "bytes of data per ConfigMap / etcd value")
	fs.StringVar(&o.workDir, "work-dir", "", "where the temporary data dirs go (default: the system temp dir)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data dirs and process logs instead of deleting them")
	fs.StringVar(&o.rafterArgs, "rafter-args", "", "extra controlplane flags, space-separated (e.g. --pprof)")
	_ = fs.Parse(os.Args[1:])
	var err error
	if o.concurrency, err = parseConcurrency(conc); err != nil {
		fmt.Fprintln(os.Stderr, "bench-store: --concurrency:", err)
		os.Exit(2)
	}
	if o.duration <= 0 || o.warmup < 0 || o.valueSize < 1 {
		fmt.Fprintln(os.Stderr, "bench-store: --duration must be positive, --warmup not negative, --value-size at least 1")
		os.Exit(2)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("received %v", sig))
	}()
	err = run(ctx, o, os.Stdout)
	signal.Stop(sigs)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "bench-store: %v; clusters stopped and temp dirs removed\n", context.Cause(ctx))
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench-store:", err)
		os.Exit(1)
	}
	cancel(nil)
}

func parseConcurrency(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// system is one store under test.
type system struct {
	name  string
	write func(prefix string) writeFunc
	cpu   func() time.Duration // CPU time used by the system's processes so far
}

// row is both systems' results at one concurrency.
type row struct {
	concurrency int
	results     map[string]stepResult // by system name
}

func run(ctx context.Context, o options, out io.Writer) error {
	for _, bin := range []string{o.controlplane, o.etcd} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	etcdVer, err := etcdVersion(o.etcd)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(o.workDir, "rafter-bench-store-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "kept data dirs and logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	printEnvironment(out, o, etcdVer, dir)

	progress("starting 3 rafter peers")
	rc, err := startRafter(ctx, o.controlplane, dir, strings.Fields(o.rafterArgs))
	if err != nil {
		return err
	}
	defer rc.stop()
	progress("starting 3 etcd members")
	ec, err := startEtcd(ctx, o.etcd, dir)
	if err != nil {
		return err
	}
	defer ec.stop()

	var conns []*grpc.ClientConn
	for _, addr := range rc.grpcAddrs {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("dial rafter %s: %w", addr, err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var clis []*clientv3.Client
	for _, ep := range ec.clientURLs {
		c, err := newEtcdClient(ep)
		if err != nil {
			return err
		}
		defer c.Close()
		clis = append(clis, c)
	}

	value := randomValue(o.valueSize)
	systems := []system{
		{"rafter", func(prefix string) writeFunc { return rafterWrites(conns, prefix, value) }, rc.cpuTime},
		{"etcd", func(prefix string) writeFunc { return etcdWrites(clis, prefix, value) }, ec.cpuTime},
	}
	var rows []row
	for i, n := range o.concurrency {
		order := systems
		if i%2 == 1 { // alternate who goes first, so neither always meets the other's leftovers
			order = []system{systems[1], systems[0]}
		}
		r := row{concurrency: n, results: map[string]stepResult{}}
		for _, sys := range order {
			progress(fmt.Sprintf("%s: %d writers, %s warm-up + %s", sys.name, n, o.warmup, o.duration))
			res, err := runStep(ctx, n, o.warmup, o.duration, sys.write(fmt.Sprintf("s%d-c%d", i, n)), sys.cpu)
			if err != nil {
				return err
			}
			if err := rc.healthy(); err != nil {
				return err
			}
			if err := ec.healthy(); err != nil {
				return err
			}
			r.results[sys.name] = res
		}
		rows = append(rows, r)
	}
	printTable(out, rows)
	fmt.Fprintf(out, "load avg:    %s at end\n", loadAvg())
	printVerdict(out, rows)
	return nil
}

// progress reports what the benchmark is doing on stderr, apart from the report.
func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), msg)
}

func randomValue(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

func printEnvironment(out io.Writer, o options, etcdVer, dir string) {
	fmt.Fprintln(out, "Rafter vs etcd: replicated writes, 3 peers each on loopback, fsync on for both")
	driver := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		driver = bi.GoVersion
	}
	cp := "unknown"
	if bi, err := buildinfo.ReadFile(o.controlplane); err == nil {
		cp = bi.GoVersion
	}
	fmt.Fprintf(out, "go version:  %s %s/%s (driver); controlplane built with %s\n", driver, runtime.GOOS, runtime.GOARCH, cp)
	fmt.Fprintf(out, "CPUs:        %d (%s)\n", runtime.NumCPU(), cpuModel())
	fmt.Fprintf(out, "etcd:        %s\n", strings.ReplaceAll(etcdVer, "\n", "\n             "))
	fmt.Fprintf(out, "data dirs:   %s (%s)\n", dir, fsType(dir))
	fmt.Fprintf(out, "load avg:    %s at start (other work on this machine skews every figure)\n", loadAvg())
	fmt.Fprintf(out, "workload:    %d-byte values, unique names; rafter = ConfigMaps.Create over gRPC, etcd = clientv3 Put;\n", o.valueSize)
	fmt.Fprintf(out, "             write k of worker i goes to peer (i+k)%%3 over one connection per peer; %s warm-up, %s measured per step\n", o.warmup, o.duration)
	fmt.Fprintln(out)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "model unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "model unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// fsType names the filesystem dir is on; tmpfs would make fsync free for both.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "filesystem unknown"
	}
	names := map[int64]string{0xEF53: "ext4", 0x01021994: "tmpfs", 0x794c7630: "overlayfs", 0x58465342: "xfs", 0x9123683E: "btrfs"}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("filesystem magic %#x", st.Type)
}

func printTable(out io.Writer, rows []row) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "concurrency\tsystem\tops/s\tp50\tp99\terrors")
	for _, r := range rows {
		ra, et := r.results["rafter"], r.results["etcd"]
		for _, name := range []string{"rafter", "etcd"} {
			res := r.results[name]
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%d\n", r.concurrency, name, res.opsPerSec(),
				fmtDur(res.percentile(0.50)), fmtDur(res.percentile(0.99)), res.errors)
		}
		fmt.Fprintf(tw, "%d\tratio\t%s\t%s\t%s\t(rafter/etcd throughput; latency ratios rafter/etcd)\n", r.concurrency,
			ratio(ra.opsPerSec(), et.opsPerSec()),
			ratio(ra.percentile(0.50).Seconds(), et.percentile(0.50).Seconds()),
			ratio(ra.percentile(0.99).Seconds(), et.percentile(0.99).Seconds()))
	}
	tw.Flush()

	fmt.Fprintln(out, "\nCPU per write in the measured window (user+sys): server = the system's 3 processes, client = this driver")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "concurrency\tsystem\tserver/op\tclient/op\tserver cores busy")
	for _, r := range rows {
		for _, name := range []string{"rafter", "etcd"} {
			res := r.results[name]
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.2f\n", r.concurrency, name, fmtDur(res.cpuPerOp(res.serverCPU)),
				fmtDur(res.cpuPerOp(res.clientCPU)), res.serverCPU.Seconds()/res.window.Seconds())
		}
	}
	tw.Flush()
	for _, r := range rows {
		for _, name := range []string{"rafter", "etcd"} {
			if res := r.results[name]; res.firstErr != nil {
				fmt.Fprintf(out, "first error (%s, concurrency %d): %v\n", name, r.concurrency, res.firstErr)
			}
		}
	}
}

// printVerdict checks the target at concurrency 256, or at the highest concurrency
// run when 256 was not.
func printVerdict(out io.Writer, rows []row) {
	if len(rows) == 0 {
		return
	}
	pick := rows[0]
	for _, r := range rows {
		if r.concurrency == verdictConcurrency {
			pick = r
			break
		}
		if r.concurrency > pick.concurrency {
			pick = r
		}
	}
	ra, et := pick.results["rafter"], pick.results["etcd"]
	tput := safeDiv(ra.opsPerSec(), et.opsPerSec())
	p99 := safeDiv(ra.percentile(0.99).Seconds(), et.percentile(0.99).Seconds())
	verdict := "MET"
	if errs := ra.errors; !(tput >= targetThroughput && p99 <= targetP99) || errs > 0 || ra.ops == 0 {
		verdict = "MISSED"
	}
	note := ""
	if pick.concurrency != verdictConcurrency {
		note = fmt.Sprintf(" [%d was not run; judged at the highest concurrency]", verdictConcurrency)
	}
	if ra.errors > 0 {
		note += fmt.Sprintf(" [rafter had %d errors]", ra.errors)
	}
	fmt.Fprintf(out, "\nat concurrency %d: throughput ratio %.2fx (target >= %.1fx), p99 ratio %.2fx (target <= %.1fx): %s%s\n",
		pick.concurrency, tput, targetThroughput, p99, targetP99, verdict, note)
}

// safeDiv returns a/b, NaN when b is 0 (so a comparison with a target fails).
func safeDiv(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// fmtDur prints a latency with three significant digits at most.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
