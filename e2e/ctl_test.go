package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ctlRun runs ctl with a config file naming every live or dead peer of c, the way a
// user's ~/.rafter/config would, and returns stdout, stderr and the error.
func (c *cluster) ctlRun(stdin string, args ...string) (string, string, error) {
	c.t.Helper()
	cfg := filepath.Join(c.dir, "ctl-config")
	if _, err := os.Stat(cfg); err != nil {
		var addrs []string
		for _, p := range c.procs {
			addrs = append(addrs, p.grpcAddr)
		}
		if err := os.WriteFile(cfg, []byte("servers: ["+strings.Join(addrs, ", ")+"]\n"), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, args...)
	cmd.Env = append(os.Environ(), "RAFTER_CONFIG="+cfg)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

func (c *cluster) ctl(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.ctlRun("", args...)
	if err != nil {
		c.t.Fatalf("ctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Must show 1 of issue 3: every file in examples/ applies on a 3-peer cluster; again,
// every object is unchanged; listings have kubectl's columns; -o yaml re-applies as
// unchanged.
func TestCtlAppliesExamples(t *testing.T) {
	c := newCluster(t, 3)
	first := lines(c.ctl("apply", "-R", "-f", "../examples/"))
	if len(first) < 10 {
		t.Fatalf("apply printed too little:\n%s", strings.Join(first, "\n"))
	}
	for _, l := range first {
		if !strings.HasSuffix(l, " created") {
			t.Errorf("first apply: %q, want created", l)
		}
	}
	second := lines(c.ctl("apply", "-R", "-f", "../examples/"))
	if len(second) != len(first) {
		t.Fatalf("second apply printed %d lines, first %d", len(second), len(first))
	}
	for _, l := range second {
		if !strings.HasSuffix(l, " unchanged") {
			t.Errorf("second apply: %q, want unchanged", l)
		}
	}

	all := c.ctl("get", "all")
	for _, want := range []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "80:30080/TCP", "web", "db"} {
		if !strings.Contains(all, want) {
			t.Errorf("ctl get all lacks %q:\n%s", want, all)
		}
	}
	svc := c.ctl("get", "svc")
	if !strings.Contains(svc, "NodePort") || !strings.Contains(svc, "None") {
		t.Errorf("ctl get svc:\n%s", svc)
	}

	for _, obj := range []string{"deployment/web", "svc/web", "statefulset/kv", "secret/db-credentials", "configmap/web-config"} {
		y := c.ctl("get", obj, "-o", "yaml")
		out, errOut, err := c.ctlRun(y, "apply", "-f", "-")
		if err != nil || !strings.HasSuffix(strings.TrimSpace(out), "unchanged") {
			t.Errorf("re-applying `get %s -o yaml`: %v\nstdout: %s\nstderr: %s", obj, err, out, errOut)
		}
	}

	// A changed manifest is configured.
	changed := strings.Replace(c.ctl("get", "cm", "web-config", "-o", "yaml"), "5432", "5433", 1)
	if out, errOut, err := c.ctlRun(changed, "apply", "-f", "-"); err != nil || !strings.Contains(out, "configured") {
		t.Fatalf("apply of a changed configmap: %v %s %s", err, out, errOut)
	}

	// As with kubectl's last-applied logic: a key removed from the manifest goes away,
	// a label someone else added stays.
	v1 := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: merge}\ndata: {a: '1', b: '2'}\n"
	if out, errOut, err := c.ctlRun(v1, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v %s %s", err, out, errOut)
	}
	c.ctl("label", "cm", "merge", "owner=ops")
	v2 := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: merge}\ndata: {a: '1'}\n"
	if out, errOut, err := c.ctlRun(v2, "apply", "-f", "-"); err != nil || !strings.Contains(out, "configured") {
		t.Fatalf("apply without b: %v %s %s", err, out, errOut)
	}
	got := c.ctl("get", "cm", "merge", "-o", "json")
	if strings.Contains(got, `"b":`) || !strings.Contains(got, `"owner": "ops"`) {
		t.Fatalf("after removing b from the manifest:\n%s", got)
	}
	if out, _, _ := c.ctlRun(v2, "apply", "-f", "-"); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply: %s", out)
	}
}

// Must show 4 of issue 3: with one of three peers killed, ctl commands work with no
// flags (the config file lists all three).
func TestCtlWithAPeerDown(t *testing.T) {
	c := newCluster(t, 3)
	c.kill9(c.procs[0]) // the first peer ctl would try
	c.ctl("create", "namespace", "ops")
	c.ctl("create", "configmap", "cfg", "-n", "ops", "--from-literal=a=1", "--from-literal=b=2")
	c.ctl("create", "secret", "generic", "pw", "-n", "ops", "--from-literal=password=s3cret")
	if out := c.ctl("get", "cm", "-n", "ops"); !strings.Contains(out, "cfg") || !strings.Contains(out, "DATA") {
		t.Fatalf("get cm:\n%s", out)
	}
	c.ctl("label", "cm", "cfg", "-n", "ops", "tier=backend")
	if out := c.ctl("get", "cm", "-n", "ops", "-l", "tier=backend", "-o", "name"); strings.TrimSpace(out) != "configmap/cfg" {
		t.Fatalf("get -l -o name: %q", out)
	}
	c.ctl("apply", "-f", "../examples/guestbook/")
	c.ctl("scale", "deployment", "web", "--replicas=5")
	if out := c.ctl("get", "deploy", "web", "-o", "json"); !strings.Contains(out, `"replicas": 5`) {
		t.Fatalf("scale did not land:\n%s", out)
	}
	c.ctl("describe", "deployment", "web")
	c.ctl("api-resources")
	c.ctl("version")
	if out := c.ctl("cluster", "members"); !strings.Contains(out, "Unreachable") || !strings.Contains(out, "Leader") {
		t.Fatalf("cluster members with a dead peer:\n%s", out)
	}
	if out := c.ctl("cluster", "transfer-leader"); !strings.Contains(out, "leader is now") {
		t.Fatalf("transfer-leader: %s", out)
	}
	snap := filepath.Join(t.TempDir(), "backup.snap")
	c.ctl("snapshot", "save", snap)
	if info, err := os.Stat(snap); err != nil || info.Size() == 0 {
		t.Fatalf("snapshot save: %v", err)
	}
	c.ctl("delete", "cm", "cfg", "-n", "ops", "--wait")
	c.ctl("delete", "-f", "../examples/guestbook/")
	if out, _, _ := c.ctlRun("", "get", "deploy", "web"); strings.Contains(out, "web") {
		t.Fatalf("deployment still there after delete -f:\n%s", out)
	}
}

// Must show 5 of issue 3: `ctl get ... -w` prints a line for every change until
// interrupted.
func TestCtlGetWatch(t *testing.T) {
	c := newCluster(t, 3)
	cfg := filepath.Join(c.dir, "watch-config")
	all := fmt.Sprintf("servers: [%s, %s, %s]\n", c.procs[0].grpcAddr, c.procs[1].grpcAddr, c.procs[2].grpcAddr)
	if err := os.WriteFile(cfg, []byte(all), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, "get", "configmaps", "-w")
	cmd.Env = append(os.Environ(), "RAFTER_CONFIG="+cfg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	expect := func(what string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-got:
				if !ok {
					t.Fatalf("watch ended before %q", what)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no line containing %q within 15s", what)
			}
		}
	}
	c.ctl("create", "configmap", "w1", "--from-literal=a=1")
	expect("NAME") // with nothing listed, the header comes with the first row
	expect("w1")
	c.ctl("create", "configmap", "w2", "--from-literal=a=1")
	expect("w2")
	c.ctl("label", "cm", "w1", "x=y")
	expect("w1")
	c.ctl("delete", "cm", "w2")
	expect("w2")
	// The watch is connected to the first peer of its config; kill it: the watch
	// resumes on another peer without losing the next change.
	c.kill9(c.procs[0])
	c.ctl("create", "configmap", "w3", "--from-literal=a=1")
	expect("w3")
	cancel()
	_ = cmd.Wait()
}

// Must shows 2 and 3 of issue 3: manifests shaped like the Kubernetes
// documentation's examples apply, then apply again unchanged; unsupported kinds and
// bad documents are reported one line each, the rest still apply, nothing else
// changes, and ctl exits non-zero.
func TestCtlAppliesRealWorldManifests(t *testing.T) {
	c := newCluster(t, 3)
	good := "../internal/ctl/manifest/testdata/good/"
	first, errOut, err := c.ctlRun("", "apply", "-f", good)
	if err != nil || strings.Contains(errOut, "error") {
		t.Fatalf("apply %s: %v\n%s\n%s", good, err, first, errOut)
	}
	for _, l := range lines(first) {
		if !strings.HasSuffix(l, " created") {
			t.Errorf("first apply: %q", l)
		}
	}
	for _, l := range lines(c.ctl("apply", "-f", good)) {
		if !strings.HasSuffix(l, " unchanged") {
			t.Errorf("second apply: %q", l)
		}
	}

	mixed := `apiVersion: v1
kind: ConfigMap
metadata: {name: before}
---
apiVersion: batch/v1
kind: Job
metadata: {name: nightly}
spec: {template: {spec: {containers: [{name: j, image: busybox}], restartPolicy: Never}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: typo}
spec:
  selector: {matchLabels: {app: typo}}
  template:
    metadata: {labels: {app: typo}}
    spec: {containers: [{name: a, image: b, imagePullPolcy: Always}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: after}
`
	out, errOut, err := c.ctlRun(mixed, "apply", "-f", "-")
	if err == nil {
		t.Fatalf("apply with bad documents exited 0:\n%s\n%s", out, errOut)
	}
	for _, want := range []string{`kind "Job" (batch/v1) is not supported`, "Deployment", "spec.template.spec.containers[0].imagePullPolcy"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, "configmap/before created") || !strings.Contains(out, "configmap/after created") {
		t.Errorf("good documents around the bad ones did not apply:\n%s", out)
	}
	if o, _, _ := c.ctlRun("", "get", "deployment", "typo"); strings.Contains(o, "typo") {
		t.Errorf("the bad Deployment was created")
	}
}

// ctl edit saves what $EDITOR wrote; completion scripts generate.
func TestCtlEditAndCompletion(t *testing.T) {
	c := newCluster(t, 3)
	c.ctl("create", "configmap", "ed", "--from-literal=color=blue")
	t.Setenv("EDITOR", "sed -i s/blue/green/")
	if out := c.ctl("edit", "cm", "ed"); !strings.Contains(out, "configmap/ed edited") {
		t.Fatalf("edit: %s", out)
	}
	if got := c.ctl("get", "cm", "ed", "-o", "yaml"); !strings.Contains(got, "color: green") {
		t.Fatalf("after edit:\n%s", got)
	}
	t.Setenv("EDITOR", "true")
	if out := c.ctl("edit", "cm", "ed"); !strings.Contains(out, "Edit cancelled, no changes made.") {
		t.Fatalf("edit without changes: %s", out)
	}
	if out := c.ctl("__complete", "get", ""); !strings.Contains(out, "pods\n") || !strings.Contains(out, "deployments\n") {
		t.Fatalf("completion of resource types:\n%s", out)
	}
	if out := c.ctl("__complete", "get", "cm", ""); !strings.Contains(out, "ed\n") {
		t.Fatalf("completion of configmap names:\n%s", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := c.ctl("completion", shell); !strings.Contains(out, "ctl") || len(out) < 500 {
			t.Fatalf("completion %s: %.200s", shell, out)
		}
	}
}
