package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// Must show 2: a write on a follower is visible on every peer with the same
// resourceVersion and uid; reflection lists the services.
func TestCreateOnFollowerVisibleOnEveryPeer(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader()
	var follower *proc
	for _, p := range c.procs {
		if p != leader {
			follower = p
			break
		}
	}
	created := c.mustDo(follower, "POST", "/api/v1/namespaces/default/configmaps", cm("a", "v"), http.StatusCreated)
	rv, uid := str(created, "metadata", "resourceVersion"), str(created, "metadata", "uid")
	if rv == "" || uid == "" {
		t.Fatalf("created object lacks resourceVersion or uid: %v", created)
	}
	for _, p := range c.procs {
		got := c.mustDo(p, "GET", "/api/v1/namespaces/default/configmaps/a", "", 200)
		if str(got, "metadata", "resourceVersion") != rv || str(got, "metadata", "uid") != uid || str(got, "data", "k") != "v" {
			t.Fatalf("%s returned %v; want resourceVersion %s uid %s", p.id, got, rv, uid)
		}
	}

	conn, err := grpc.NewClient(follower.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		services[s.GetName()] = true
	}
	for _, want := range []string{"rafter.core.v1.ConfigMaps", "rafter.core.v1.Pods", "rafter.apps.v1.Deployments", "rafter.cluster.v1.Cluster"} {
		if !services[want] {
			t.Errorf("reflection does not list %s; got %v", want, services)
		}
	}
}

// watchLines streams a watch and sends each decoded line on the returned channel.
func watchLines(t *testing.T, ctx context.Context, p *proc, path string) (<-chan map[string]any, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.httpAddr+path, nil)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("watch %s on %s: %v", path, p.id, err)
	}
	ch := make(chan map[string]any, 100)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		close(ch)
		t.Logf("watch %s: %d %s", path, resp.StatusCode, b)
		return ch, resp.StatusCode
	}
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				ch <- ev
			}
		}
	}()
	return ch, 200
}

// Must show 3: ?watch=true&resourceVersion=N streams every change after N, in order,
// on every peer; a resourceVersion older than the window gets 410.
func TestWatchFromResourceVersionOnEveryPeer(t *testing.T) {
	c := newCluster(t, 3, "--watch-window=50")
	p0 := c.procs[0]
	start := c.mustDo(p0, "POST", "/api/v1/namespaces/default/configmaps", cm("w0", "0"), http.StatusCreated)
	n := str(start, "metadata", "resourceVersion")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var streams []<-chan map[string]any
	for _, p := range c.procs {
		ch, code := watchLines(t, ctx, p, "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion="+n)
		if code != 200 {
			t.Fatalf("watch on %s: status %d", p.id, code)
		}
		streams = append(streams, ch)
	}
	type change struct{ typ, name, rv string }
	var want []change
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("w%d", i)
		o := c.mustDo(c.procs[i%3], "POST", "/api/v1/namespaces/default/configmaps", cm(name, "1"), http.StatusCreated)
		want = append(want, change{"ADDED", name, str(o, "metadata", "resourceVersion")})
		o["data"] = map[string]any{"k": "2"}
		b, _ := json.Marshal(o)
		o = c.mustDo(c.procs[(i+1)%3], "PUT", "/api/v1/namespaces/default/configmaps/"+name, string(b), 200)
		want = append(want, change{"MODIFIED", name, str(o, "metadata", "resourceVersion")})
	}
	o := c.mustDo(c.procs[2], "DELETE", "/api/v1/namespaces/default/configmaps/w1", "", 200)
	want = append(want, change{"DELETED", "w1", str(o, "metadata", "resourceVersion")})

	for i, ch := range streams {
		for j, w := range want {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("%s: stream ended after %d events", c.procs[i].id, j)
				}
				obj, _ := ev["object"].(map[string]any)
				got := change{fmt.Sprint(ev["type"]), str(obj, "metadata", "name"), str(obj, "metadata", "resourceVersion")}
				if got != w {
					t.Fatalf("%s: event %d = %+v, want %+v", c.procs[i].id, j, got, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no event %d (%+v) within 10s", c.procs[i].id, j, w)
			}
		}
	}

	// Push the start of the history past resourceVersion n: the window holds 50.
	for i := 0; i < 60; i++ {
		c.mustDo(p0, "POST", "/api/v1/namespaces/default/configmaps", cm(fmt.Sprintf("fill%d", i), "x"), http.StatusCreated)
	}
	for _, p := range c.procs {
		c.eventually(10*time.Second, "410 on "+p.id, func() error {
			code, body, _ := c.do(p, "GET", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion="+n, "")
			if code != http.StatusGone {
				return fmt.Errorf("status %d: %s", code, body)
			}
			if !strings.Contains(string(body), `"reason":"Expired"`) {
				return fmt.Errorf("410 body is not an Expired Status: %s", body)
			}
			return nil
		})
	}
}

// Must show 4: kill -9 the leader five times; a survivor accepts writes again, no
// acknowledged write is lost, and the killed peer catches up after a restart.
func TestKillLeaderFailover(t *testing.T) {
	c := newCluster(t, 3)
	var acked []string
	var failovers []time.Duration
	for round := 0; round < 5; round++ {
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("r%d-%d", round, i)
			c.mustDo(c.leader(), "POST", "/api/v1/namespaces/default/configmaps", cm(name, name), http.StatusCreated)
			acked = append(acked, name)
		}
		victim := c.leader()
		c.kill9(victim)
		killed := time.Now()
		var survivor *proc
		for _, p := range c.procs {
			if p.alive() {
				survivor = p
				break
			}
		}
		name := fmt.Sprintf("after-kill-%d", round)
		c.eventually(30*time.Second, "a write after killing "+victim.id, func() error {
			code, body, _ := c.do(survivor, "POST", "/api/v1/namespaces/default/configmaps", cm(name, "x"))
			if code == http.StatusCreated {
				return nil
			}
			if code == http.StatusConflict { // an earlier attempt landed although its answer was lost
				return nil
			}
			return fmt.Errorf("status %d: %s", code, body)
		})
		failovers = append(failovers, time.Since(killed))
		acked = append(acked, name)

		c.start(victim) // same data dir
		c.waitReady(victim)
	}
	sorted := append([]time.Duration(nil), failovers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("failover (kill -9 of the leader until a survivor acknowledged a write): %v; median %v", failovers, sorted[len(sorted)/2])

	leader := c.leader()
	var leaderApplied string
	for _, m := range c.members(leader) {
		if m["id"] == leader.id {
			leaderApplied = fmt.Sprint(m["appliedIndex"])
		}
	}
	for _, p := range c.procs {
		for _, name := range acked {
			got := c.mustDo(p, "GET", "/api/v1/namespaces/default/configmaps/"+name, "", 200)
			if str(got, "metadata", "name") != name {
				t.Fatalf("%s: acknowledged write %s missing", p.id, name)
			}
		}
	}
	c.eventually(10*time.Second, "every peer caught up", func() error {
		want, _ := strconv.ParseUint(leaderApplied, 10, 64)
		for _, m := range c.members(leader) {
			got, _ := strconv.ParseUint(fmt.Sprint(m["appliedIndex"]), 10, 64)
			if got < want {
				return fmt.Errorf("%s applied %d < %d", m["id"], got, want)
			}
		}
		return nil
	})
}

// Must show 5: bad input is rejected with Kubernetes' codes and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	c := newCluster(t, 3)
	p := c.procs[1]
	orig := c.mustDo(p, "POST", "/api/v1/namespaces/default/configmaps", cm("a", "1"), http.StatusCreated)
	oldRV := str(orig, "metadata", "resourceVersion")
	upd := c.mustDo(p, "PUT", "/api/v1/namespaces/default/configmaps/a",
		fmt.Sprintf(`{"metadata":{"name":"a","resourceVersion":%q},"data":{"k":"2"}}`, oldRV), 200)
	snapshot := func() string {
		_, b, _ := c.do(c.procs[0], "GET", "/api/v1/namespaces/default/configmaps", "")
		var l map[string]any
		_ = json.Unmarshal(b, &l)
		out, _ := json.Marshal(l["items"])
		_, svcs, _ := c.do(c.procs[0], "GET", "/api/v1/namespaces/default/services", "")
		var s map[string]any
		_ = json.Unmarshal(svcs, &s)
		out2, _ := json.Marshal(s["items"])
		return string(out) + string(out2)
	}
	before := snapshot()

	cases := []struct {
		name, method, path, body string
		code                     int
		contains                 []string
	}{
		{"stale resourceVersion", "PUT", "/api/v1/namespaces/default/configmaps/a",
			fmt.Sprintf(`{"metadata":{"name":"a","resourceVersion":%q},"data":{"k":"3"}}`, oldRV), 409, []string{`"reason":"Conflict"`}},
		{"unknown field", "POST", "/api/v1/namespaces/default/configmaps",
			`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"},"dtaa":{"k":"v"}}`, 400, []string{`dtaa`}},
		{"unknown nested field", "POST", "/api/v1/namespaces/default/configmaps",
			`{"metadata":{"name":"b","lables":{"a":"b"}}}`, 400, []string{`lables`}},
		{"invalid name", "POST", "/api/v1/namespaces/default/configmaps", cm("Bad_Name", "v"), 422,
			[]string{`"field":"metadata.name"`, `"reason":"Invalid"`}},
		{"nodePort out of range", "POST", "/api/v1/namespaces/default/services",
			`{"metadata":{"name":"np"},"spec":{"type":"NodePort","selector":{"app":"x"},"ports":[{"port":80,"nodePort":29999}]}}`, 422,
			[]string{`"field":"spec.ports[0].nodePort"`, `30000-32767`}},
		{"malformed JSON", "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"c"`, 400, []string{`"reason":"BadRequest"`}},
		{"missing namespace", "POST", "/api/v1/namespaces/nope/configmaps", cm("d", "v"), 404, []string{`namespaces \"nope\" not found`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, peer := range c.procs {
				code, body, _ := c.do(peer, tc.method, tc.path, tc.body)
				if code != tc.code {
					t.Fatalf("%s: status %d, want %d: %s", peer.id, code, tc.code, body)
				}
				for _, s := range tc.contains {
					if !strings.Contains(string(body), s) {
						t.Errorf("%s: body %s does not contain %s", peer.id, body, s)
					}
				}
				if !strings.Contains(string(body), `"kind":"Status"`) {
					t.Errorf("%s: body is not a Status: %s", peer.id, body)
				}
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("rejected requests changed state:\nbefore %s\nafter  %s", before, after)
	}
	if got := c.mustDo(c.procs[2], "GET", "/api/v1/namespaces/default/configmaps/a", "", 200); str(got, "data", "k") != "2" ||
		str(got, "metadata", "resourceVersion") != str(upd, "metadata", "resourceVersion") {
		t.Fatalf("object changed: %v", got)
	}
}

// Must show 6: snapshots and log tail on restart, snapshot install for a new peer,
// and backup/restore into a fresh single-peer cluster.
func TestSnapshotsJoinAndRestore(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-threshold=40", "--trailing-logs=10", "--snapshot-interval=200ms")
	const n = 150
	for i := 0; i < n; i++ {
		c.mustDo(c.procs[i%3], "POST", "/api/v1/namespaces/default/configmaps", cm(fmt.Sprintf("s%03d", i), strconv.Itoa(i)), http.StatusCreated)
	}
	list := func(p *proc, q string) string {
		c.t.Helper()
		out := c.mustDo(p, "GET", "/api/v1/namespaces/default/configmaps"+q, "", 200)
		b, _ := json.Marshal(out["items"])
		return string(b)
	}
	want := list(c.procs[0], "")

	// A restarted peer loads its latest snapshot and replays the log tail.
	restarted := c.procs[2]
	c.eventually(30*time.Second, "snapshots on disk", func() error {
		m, _ := filepath.Glob(filepath.Join(restarted.dataDir, "snapshots", "*", "state.bin"))
		if len(m) == 0 {
			return fmt.Errorf("no snapshot in %s yet", restarted.dataDir)
		}
		return nil
	})
	c.kill9(restarted)
	c.mustDo(c.procs[0], "POST", "/api/v1/namespaces/default/configmaps", cm("tail", "t"), http.StatusCreated)
	c.start(restarted)
	c.waitReady(restarted)
	if !strings.Contains(restarted.log.String(), "restored snapshot") {
		t.Errorf("restarted peer did not load a snapshot; log:\n%s", tail(restarted.log.String(), 20))
	}
	want = list(c.procs[0], "")
	if got := list(restarted, ""); got != want {
		t.Fatalf("restarted peer differs from the cluster")
	}

	// A fourth peer joins later and catches up through a snapshot install.
	p4 := c.newProc("p4", "--snapshot-threshold=40", "--trailing-logs=10", "--snapshot-interval=200ms", "--join="+c.procs[0].grpcAddr)
	c.start(p4)
	c.waitReady(p4)
	if got := list(p4, ""); got != want {
		t.Fatalf("joined peer p4 differs from the cluster")
	}
	if !strings.Contains(p4.log.String(), "restored snapshot") {
		t.Errorf("p4 did not catch up through a snapshot install; log:\n%s", tail(p4.log.String(), 20))
	}
	ms := c.members(c.procs[1])
	if len(ms) != 4 {
		t.Fatalf("members after join: %v", ms)
	}

	// Backup, then restore into a fresh data dir as a new single-peer cluster.
	code, backup, _ := c.do(c.procs[1], "GET", "/cluster/v1/snapshot", "")
	if code != 200 || len(backup) == 0 {
		t.Fatalf("snapshot save: %d (%d bytes)", code, len(backup))
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	r := &cluster{t: t, dir: t.TempDir()}
	rp := r.newProc("r1", "--restore="+file)
	r.start(rp)
	t.Cleanup(r.stopAll)
	r.eventually(30*time.Second, "restored peer serving the backup", func() error {
		code, b, _ := r.do(rp, "GET", "/api/v1/namespaces/default/configmaps/tail", "")
		if code != 200 {
			return fmt.Errorf("%d %s", code, b)
		}
		return nil
	})
	if got := list(rp, ""); got != want {
		t.Fatalf("restored cluster differs from the backup:\n got %.300s\nwant %.300s", got, want)
	}
	// It accepts writes, with resourceVersions above the restored ones.
	o := r.mustDo(rp, "POST", "/api/v1/namespaces/default/configmaps", cm("after-restore", "x"), http.StatusCreated)
	nrv, _ := strconv.ParseUint(str(o, "metadata", "resourceVersion"), 10, 64)
	old := r.mustDo(rp, "GET", "/api/v1/namespaces/default/configmaps/tail", "", 200)
	orv, _ := strconv.ParseUint(str(old, "metadata", "resourceVersion"), 10, 64)
	if nrv <= orv {
		t.Fatalf("resourceVersion after restore %d is not above the restored %d", nrv, orv)
	}
}

// Membership: transfer leadership to a named peer, remove a peer, health, metrics,
// and a clean exit on SIGTERM.
func TestMembershipHealthAndShutdown(t *testing.T) {
	c := newCluster(t, 3)
	p1 := c.procs[0]
	for _, path := range []string{"/healthz", "/readyz", "/livez"} {
		if code, b, _ := c.do(p1, "GET", path, ""); code != 200 {
			t.Fatalf("%s: %d %s", path, code, b)
		}
	}
	code, metrics, _ := c.do(p1, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(metrics), "rafter_raft_applied_index") || !strings.Contains(string(metrics), "rafter_api_requests_total") {
		t.Fatalf("/metrics: %d %.300s", code, metrics)
	}
	if code, b, _ := c.do(p1, "GET", "/openapi/v2", ""); code != 200 || !strings.Contains(string(b), "/api/v1/namespaces/{namespace}/pods") {
		t.Fatalf("/openapi/v2: %d %.200s", code, b)
	}

	leader := c.leader()
	var target *proc
	for _, p := range c.procs {
		if p != leader {
			target = p
			break
		}
	}
	out := c.mustDo(p1, "POST", "/cluster/v1/leader", fmt.Sprintf(`{"id":%q}`, target.id), 200)
	if out["leader"] != target.id {
		t.Fatalf("transfer leadership: %v", out)
	}
	if got := c.leader(); got != target {
		t.Fatalf("leader after transfer is %s, want %s", got.id, target.id)
	}

	var victim *proc
	for _, p := range c.procs {
		if p != target {
			victim = p
			break
		}
	}
	out = c.mustDo(target, "DELETE", "/cluster/v1/members/"+victim.id, "", 200)
	if ms, _ := out["members"].([]any); len(ms) != 2 {
		t.Fatalf("members after removing %s: %v", victim.id, out)
	}
	if code, b, _ := c.do(target, "DELETE", "/cluster/v1/members/nobody", ""); code != 404 {
		t.Fatalf("removing an unknown peer: %d %s", code, b)
	}
	// The two remaining peers still form a quorum.
	c.mustDo(target, "POST", "/api/v1/namespaces/default/configmaps", cm("after-remove", "x"), http.StatusCreated)

	_ = target.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-target.done:
		if code := target.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code after SIGTERM: %d\n%s", code, tail(target.log.String(), 20))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("peer did not exit within 15s of SIGTERM")
	}
}
