package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/ctl/client"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

// servers is the --server value naming every peer of c.
func servers(c *testcluster.Cluster) string {
	var addrs []string
	for _, p := range c.Peers {
		addrs = append(addrs, p.GRPCAddr)
	}
	return strings.Join(addrs, ",")
}

// runCtl runs ctl against c as Main does, writing to out and errOut (the error Main
// would print included), and returns the exit code.
func runCtl(c *testcluster.Cluster, out, errOut io.Writer, args ...string) int {
	root := NewRoot(Streams{In: strings.NewReader(""), Out: out, Err: errOut})
	root.SetArgs(append([]string{"--server", servers(c), "--request-timeout", "10s"}, args...))
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errFailed) {
			fmt.Fprintln(errOut, serverError(err))
		}
		return 1
	}
	return 0
}

// ctl runs ctl against c and returns stdout, stderr and the exit code.
func ctl(c *testcluster.Cluster, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := runCtl(c, &out, &errOut, args...)
	return out.String(), errOut.String(), code
}

// mustCtl runs ctl and fails the test unless it exits 0.
func mustCtl(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, errOut, code := ctl(c, args...)
	if code != 0 {
		t.Fatalf("ctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// wantCtl runs ctl and checks its exact stdout, stderr and exit code.
func wantCtl(t *testing.T, c *testcluster.Cluster, wantOut, wantErr string, wantCode int, args ...string) {
	t.Helper()
	out, errOut, code := ctl(c, args...)
	if out != wantOut || errOut != wantErr || code != wantCode {
		t.Errorf("ctl %s:\nexit %d, want %d\nstdout:\n%q\nwant:\n%q\nstderr:\n%q\nwant:\n%q",
			strings.Join(args, " "), code, wantCode, out, wantOut, errOut, wantErr)
	}
}

// runIntercepted runs one command, made by newCmd, over a connection to c whose
// unary calls go through interceptor, as Main would run it.
func runIntercepted(t *testing.T, c *testcluster.Cluster, interceptor grpc.UnaryClientInterceptor, out, errOut io.Writer,
	newCmd func(*env) *cobra.Command, args ...string) {
	t.Helper()
	conn, err := grpc.NewClient(c.Peers[0].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(interceptor))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := &env{Streams: Streams{Out: out, Err: errOut}, timeout: 10 * time.Second, now: time.Now, c: &client.Client{Conn: conn}}
	cmd := newCmd(e)
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err != nil && !errors.Is(err, errFailed) {
		fmt.Fprintln(errOut, serverError(err))
	}
}

// syncBuffer is a bytes.Buffer that a running command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// template is a pod template labelled app=app with one container.
func template(app, image string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:     &corev1.PodSpec{Containers: []*corev1.Container{{Name: "app", Image: image}}},
	}
}

func createDeployment(t *testing.T, c *testcluster.Cluster, name string, replicas int32, image string) *appsv1.Deployment {
	t.Helper()
	d, err := appsv1.NewDeploymentsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateDeploymentRequest{
		Namespace: "default",
		Body: &appsv1.Deployment{
			Metadata: &metav1.ObjectMeta{Name: name},
			Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: template(name, image)},
		},
	})
	if err != nil {
		t.Fatalf("create deployment %s: %v", name, err)
	}
	return d
}

func getDeployment(t *testing.T, c *testcluster.Cluster, name string) *appsv1.Deployment {
	t.Helper()
	d, err := appsv1.NewDeploymentsClient(c.Peers[0].Conn).Get(testCtx(t), &metav1.GetRequest{Namespace: "default", Name: name})
	if err != nil {
		t.Fatalf("get deployment %s: %v", name, err)
	}
	return d
}

// createRevision creates the ReplicaSet a Deployment controller would have made for
// revision rev of d with image (and change cause, if any).
func createRevision(t *testing.T, c *testcluster.Cluster, d *appsv1.Deployment, rev int, image, cause string) *appsv1.ReplicaSet {
	t.Helper()
	app := d.GetMetadata().GetName()
	hash := fmt.Sprintf("h%d", rev)
	tmpl := template(app, image)
	tmpl.Metadata.Labels[podTemplateHashLabel] = hash
	annotations := map[string]string{revisionAnnotation: fmt.Sprint(rev)}
	if cause != "" {
		annotations[changeCauseAnnotation] = cause
	}
	rs, err := appsv1.NewReplicaSetsClient(c.Peers[0].Conn).Create(testCtx(t), &appsv1.CreateReplicaSetRequest{
		Namespace: "default",
		Body: &appsv1.ReplicaSet{
			Metadata: &metav1.ObjectMeta{Name: app + "-" + hash, Annotations: annotations,
				Labels:          map[string]string{"app": app, podTemplateHashLabel: hash},
				OwnerReferences: []*metav1.OwnerReference{controllerRef("apps/v1", "Deployment", app, d.GetMetadata().GetUid())}},
			Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(0),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app, podTemplateHashLabel: hash}},
				Template: tmpl},
		},
	})
	if err != nil {
		t.Fatalf("create replica set for revision %d: %v", rev, err)
	}
	return rs
}

func controllerRef(apiVersion, kind, name, uid string) *metav1.OwnerReference {
	return &metav1.OwnerReference{ApiVersion: apiVersion, Kind: kind, Name: name, Uid: uid, Controller: proto.Bool(true)}
}

// setDeploymentStatus writes d's status, as a Deployment controller would.
func setDeploymentStatus(t *testing.T, c *testcluster.Cluster, name string, st *appsv1.DeploymentStatus) {
	t.Helper()
	_, err := appsv1.NewDeploymentsClient(c.Peers[0].Conn).UpdateStatus(testCtx(t), &appsv1.UpdateDeploymentRequest{
		Namespace: "default", Name: name,
		Body: &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: name}, Status: st},
	})
	if err != nil {
		t.Fatalf("update status of deployment %s: %v", name, err)
	}
}
