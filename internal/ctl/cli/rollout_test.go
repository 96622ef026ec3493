package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	"github.com/rafter-dev/rafter/internal/testcluster"
)

func TestDeploymentStatus(t *testing.T) {
	deployment := func(generation int64, replicas int32, st *appsv1.DeploymentStatus) *appsv1.Deployment {
		return &appsv1.Deployment{
			Metadata: &metav1.ObjectMeta{Name: "web", Generation: generation, Annotations: map[string]string{revisionAnnotation: "3"}},
			Spec:     &appsv1.DeploymentSpec{Replicas: proto.Int32(replicas)},
			Status:   st,
		}
	}
	cases := []struct {
		name     string
		d        *appsv1.Deployment
		revision int64
		msg      string
		done     bool
		err      string
	}{
		{name: "not observed", d: deployment(2, 3, &appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3}),
			msg: "Waiting for deployment spec update to be observed...\n"},
		{name: "no status", d: deployment(1, 3, nil), msg: "Waiting for deployment spec update to be observed...\n"},
		{name: "updating", d: deployment(2, 5, &appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 6, UpdatedReplicas: 2}),
			msg: "Waiting for deployment \"web\" rollout to finish: 2 out of 5 new replicas have been updated...\n"},
		{name: "old pending", d: deployment(2, 5, &appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 6, UpdatedReplicas: 5, AvailableReplicas: 5}),
			msg: "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"},
		{name: "unavailable", d: deployment(2, 5, &appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 5, UpdatedReplicas: 5, AvailableReplicas: 3}),
			msg: "Waiting for deployment \"web\" rollout to finish: 3 of 5 updated replicas are available...\n"},
		{name: "done", d: deployment(2, 5, &appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 5, UpdatedReplicas: 5, AvailableReplicas: 5}),
			msg: "deployment \"web\" successfully rolled out\n", done: true},
		{name: "scaled to zero", d: deployment(1, 0, &appsv1.DeploymentStatus{ObservedGeneration: 1}),
			msg: "deployment \"web\" successfully rolled out\n", done: true},
		{name: "deadline exceeded", d: deployment(1, 5, &appsv1.DeploymentStatus{ObservedGeneration: 1,
			Conditions: []*appsv1.DeploymentCondition{{Type: "Progressing", Status: "False", Reason: "ProgressDeadlineExceeded"}}}),
			err: "deployment \"web\" exceeded its progress deadline"},
		{name: "pinned revision", d: deployment(1, 0, &appsv1.DeploymentStatus{ObservedGeneration: 1}), revision: 3,
			msg: "deployment \"web\" successfully rolled out\n", done: true},
		{name: "other revision", d: deployment(1, 0, &appsv1.DeploymentStatus{ObservedGeneration: 1}), revision: 2,
			err: "desired revision (2) is different from the running revision (3)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, done, err := rolloutStatusOf(tc.d, tc.revision)
			if msg != tc.msg || done != tc.done || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
				t.Errorf("got %q %v %v, want %q %v %q", msg, done, err, tc.msg, tc.done, tc.err)
			}
		})
	}
}

func TestDaemonSetAndStatefulSetStatus(t *testing.T) {
	rolling := &appsv1.DaemonSetUpdateStrategy{Type: "RollingUpdate"}
	ds := func(st *appsv1.DaemonSetStatus) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{Metadata: &metav1.ObjectMeta{Name: "agent", Generation: 1},
			Spec: &appsv1.DaemonSetSpec{UpdateStrategy: rolling}, Status: st}
	}
	sts := func(partition *int32, st *appsv1.StatefulSetStatus) *appsv1.StatefulSet {
		strategy := &appsv1.StatefulSetUpdateStrategy{Type: "RollingUpdate"}
		if partition != nil {
			strategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: partition}
		}
		return &appsv1.StatefulSet{Metadata: &metav1.ObjectMeta{Name: "kv", Generation: 1},
			Spec: &appsv1.StatefulSetSpec{Replicas: proto.Int32(3), UpdateStrategy: strategy}, Status: st}
	}
	cases := []struct {
		obj  proto.Message
		msg  string
		done bool
	}{
		{ds(nil), "Waiting for daemon set spec update to be observed...\n", false},
		{ds(&appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 1}),
			"Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...\n", false},
		{ds(&appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 2}),
			"Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available...\n", false},
		{ds(&appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}),
			"daemon set \"agent\" successfully rolled out\n", true},
		{sts(nil, nil), "Waiting for statefulset spec update to be observed...\n", false},
		{sts(nil, &appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 1}), "Waiting for 2 pods to be ready...\n", false},
		{sts(proto.Int32(1), &appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 1}),
			"Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...\n", false},
		{sts(proto.Int32(0), &appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 3}),
			"partitioned roll out complete: 3 new pods have been updated...\n", true},
		{sts(nil, &appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 1, UpdateRevision: "kv-2", CurrentRevision: "kv-1"}),
			"waiting for statefulset rolling update to complete 1 pods at revision kv-2...\n", false},
		{sts(nil, &appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, CurrentReplicas: 3, UpdateRevision: "kv-2", CurrentRevision: "kv-2"}),
			"statefulset rolling update complete 3 pods at revision kv-2...\n", true},
	}
	for _, tc := range cases {
		msg, done, err := rolloutStatusOf(tc.obj, 0)
		if msg != tc.msg || done != tc.done || err != nil {
			t.Errorf("got %q %v %v, want %q %v", msg, done, err, tc.msg, tc.done)
		}
	}
	onDelete := ds(nil)
	onDelete.Spec.UpdateStrategy = &appsv1.DaemonSetUpdateStrategy{Type: "OnDelete"}
	if _, _, err := rolloutStatusOf(onDelete, 0); err == nil || err.Error() != "rollout status is only available for RollingUpdate strategy type" {
		t.Errorf("OnDelete daemon set: %v", err)
	}
}

func TestRolloutStatus(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 3, "nginx:1")
	wantCtl(t, c, "Waiting for deployment spec update to be observed...\n", "", 0, "rollout", "status", "deployment/web", "--watch=false")
	setDeploymentStatus(t, c, "web", &appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 1})
	waiting := "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
	wantCtl(t, c, waiting, "", 0, "rollout", "status", "deployment", "web", "--watch=false")
	wantCtl(t, c, waiting, "error: timed out waiting for the condition\n", 1, "rollout", "status", "deployment/web", "--timeout=300ms")
	wantCtl(t, c, "", "Error from server (NotFound): deployments.apps \"nope\" not found\n", 1, "rollout", "status", "deployment/nope")
	wantCtl(t, c, "", "error: no status viewer has been implemented for Pod\n", 1, "rollout", "status", "pod/web")

	// Watching: a line for every change of the deployment, until it is rolled out.
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- runCtl(c, &out, &errOut, "rollout", "status", "deployment/web", "--timeout=30s") }()
	steps := []struct {
		status *appsv1.DeploymentStatus
		line   string
	}{
		{&appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 4, UpdatedReplicas: 3, AvailableReplicas: 1},
			"Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n"},
		{&appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 2},
			"Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n"},
		{&appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3},
			"deployment \"web\" successfully rolled out\n"},
	}
	want := waiting
	waitFor := func(what string) {
		deadline := time.Now().Add(10 * time.Second)
		for out.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: stdout %q, want %q (stderr %q)", what, out.String(), want, errOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first status")
	for _, s := range steps {
		setDeploymentStatus(t, c, "web", s.status)
		want += s.line
		waitFor(s.line)
	}
	select {
	case code := <-exit:
		if code != 0 || errOut.String() != "" {
			t.Errorf("exit %d, stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("rollout status did not end when the rollout was done")
	}

	// A deployment deleted while watched ends the watch with an error.
	createDeployment(t, c, "doomed", 1, "nginx:1")
	var dout, derr syncBuffer
	go func() { exit <- runCtl(c, &dout, &derr, "rollout", "status", "deployment/doomed") }()
	for !strings.Contains(dout.String(), "Waiting") {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := appsv1.NewDeploymentsClient(c.Peers[0].Conn).Delete(testCtx(t), &metav1.DeleteRequest{Namespace: "default", Name: "doomed"}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 1 || derr.String() != "error: object has been deleted\n" {
			t.Errorf("exit %d, stderr %q", code, derr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("rollout status did not end when the deployment was deleted")
	}
}

func TestRolloutHistoryAndUndo(t *testing.T) {
	c := testcluster.New(t, 3)
	d := createDeployment(t, c, "web", 2, "app:3")
	createRevision(t, c, d, 1, "app:1", "ctl create deployment web --image=app:1")
	createRevision(t, c, d, 2, "app:2", "")
	createRevision(t, c, d, 3, "app:3", "ctl set image deployment/web app=app:3")
	other := createDeployment(t, c, "other", 1, "other:1")
	createRevision(t, c, other, 9, "other:1", "not web's")

	wantCtl(t, c, "deployment.apps/web \n"+
		"REVISION  CHANGE-CAUSE\n"+
		"1         ctl create deployment web --image=app:1\n"+
		"2         <none>\n"+
		"3         ctl set image deployment/web app=app:3\n\n", "", 0,
		"rollout", "history", "deployment/web")
	wantCtl(t, c, "deployment.apps/web with revision #2\n"+
		"Pod Template:\n"+
		"  Labels:\tapp=web\n"+
		"\tpod-template-hash=h2\n"+
		"  Containers:\n"+
		"   app:\n"+
		"    Image:\tapp:2\n"+
		"    Port:\t<none>\n"+
		"    Host Port:\t<none>\n"+
		"    Environment:\t<none>\n"+
		"    Mounts:\t<none>\n"+
		"  Volumes:\t<none>\n"+
		"  Node-Selectors:\t<none>\n"+
		"  Tolerations:\t<none>\n\n", "", 0,
		"rollout", "history", "deployment/web", "--revision=2")
	out := mustCtl(t, c, "rollout", "history", "deployment/web", "--revision=1")
	if !strings.Contains(out, "  Annotations:\tkubernetes.io/change-cause: ctl create deployment web --image=app:1\n") {
		t.Errorf("revision 1 lacks its change cause:\n%s", out)
	}
	wantCtl(t, c, "", "error: unable to find the specified revision\n", 1, "rollout", "history", "deployment/web", "--revision=7")

	image := func() string {
		return getDeployment(t, c, "web").GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage()
	}
	wantCtl(t, c, "deployment.apps/web rolled back\n", "", 0, "rollout", "undo", "deployment/web")
	rolled := getDeployment(t, c, "web")
	if got := image(); got != "app:2" {
		t.Errorf("image %s after undo, want app:2 (the previous revision)", got)
	}
	if _, has := rolled.GetSpec().GetTemplate().GetMetadata().GetLabels()[podTemplateHashLabel]; has {
		t.Errorf("undo copied the pod-template-hash label: %v", rolled.GetSpec().GetTemplate().GetMetadata().GetLabels())
	}
	// Without a controller the revisions do not move: the previous one is still 2.
	wantCtl(t, c, "deployment.apps/web skipped rollback (current template already matches revision 2)\n", "", 0, "rollout", "undo", "deployment/web")
	wantCtl(t, c, "deployment.apps/web rolled back\n", "", 0, "rollout", "undo", "deployment", "web", "--to-revision=1")
	if got := image(); got != "app:1" {
		t.Errorf("image %s after undo --to-revision=1", got)
	}
	if got := getDeployment(t, c, "web").GetMetadata().GetAnnotations()[changeCauseAnnotation]; got != "ctl create deployment web --image=app:1" {
		t.Errorf("change cause %q after undo to revision 1, want revision 1's", got)
	}
	wantCtl(t, c, "", "error: unable to find specified revision 9 in history\n", 1, "rollout", "undo", "deployment/web", "--to-revision=9")

	mustCtl(t, c, "rollout", "pause", "deployment/web")
	wantCtl(t, c, "", "error: you cannot rollback a paused deployment; resume it first with 'ctl rollout resume' and try again\n", 1,
		"rollout", "undo", "deployment/web", "--to-revision=3")

	createDeployment(t, c, "fresh", 1, "app:1")
	wantCtl(t, c, "deployment.apps/fresh \nNo rollout history found.\n", "", 0, "rollout", "history", "deployment/fresh")
	wantCtl(t, c, "", "error: no rollout history found for deployment \"fresh\"\n", 1, "rollout", "undo", "deployment/fresh")
	wantCtl(t, c, "", "error: required resource not specified\n", 1, "rollout", "undo")
}

func TestRolloutPauseResumeRestart(t *testing.T) {
	c := testcluster.New(t, 3)
	createDeployment(t, c, "web", 1, "app:1")
	paused := func() bool { return getDeployment(t, c, "web").GetSpec().GetPaused() }

	wantCtl(t, c, "deployment.apps/web paused\n", "", 0, "rollout", "pause", "deployment/web")
	if !paused() {
		t.Fatal("not paused")
	}
	wantCtl(t, c, "", "error: deployments.apps \"web\" is already paused\n", 1, "rollout", "pause", "deployment/web")
	wantCtl(t, c, "", "error: deployments.apps \"web\" can't restart paused deployment (run rollout resume first)\n", 1,
		"rollout", "restart", "deployment/web")
	wantCtl(t, c, "deployment.apps/web resumed\n", "", 0, "rollout", "resume", "deploy/web")
	if paused() {
		t.Fatal("still paused")
	}
	wantCtl(t, c, "", "error: deployments.apps \"web\" is not paused\n", 1, "rollout", "resume", "deployment/web")
	wantCtl(t, c, "", "error: daemonsets.apps \"agent\" pausing is not supported\n", 1, "rollout", "pause", "daemonset/agent")

	wantCtl(t, c, "deployment.apps/web restarted\n", "", 0, "rollout", "restart", "deployment/web")
	at := getDeployment(t, c, "web").GetSpec().GetTemplate().GetMetadata().GetAnnotations()[restartedAtAnnotation]
	if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Errorf("restartedAt annotation %q: %v", at, err)
	}
}

// TestDescribePodTemplate checks the template text of `rollout history --revision`
// for the fields Rafter acts on, against kubectl's layout.
func TestDescribePodTemplate(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"a": "1", lastAppliedKey: "{}"}},
		Spec: &corev1.PodSpec{
			ServiceAccountName: "web",
			Containers: []*corev1.Container{{
				Name: "web", Image: "nginx:1", Command: []string{"nginx"}, Args: []string{"-g", "daemon off;"},
				Ports: []*corev1.ContainerPort{{ContainerPort: 80, Protocol: "TCP"}, {ContainerPort: 443, HostPort: 8443, Protocol: "TCP"}},
				Resources: &corev1.ResourceRequirements{
					Limits:   map[string]*structpb.Value{"memory": structpb.NewStringValue("128Mi"), "cpu": structpb.NewStringValue("500m")},
					Requests: map[string]*structpb.Value{"cpu": structpb.NewStringValue("100m")}},
				ReadinessProbe: &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz", Port: structpb.NewNumberValue(80), Scheme: "HTTP"},
					TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
				Env: []*corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{Name: "db", Key: "password"}}}},
				VolumeMounts: []*corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp"}, {Name: "config", MountPath: "/etc/nginx", ReadOnly: true}},
			}},
			Volumes: []*corev1.Volume{
				{Name: "config", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "web-config"}},
				{Name: "scratch", EmptyDir: &corev1.EmptyDirVolumeSource{}},
			},
			NodeSelector: map[string]string{"disk": "ssd"},
			Tolerations: []*corev1.Toleration{{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)},
				{Key: "dedicated", Operator: "Equal", Value: "web", Effect: "NoSchedule"}},
		},
	}
	want := "Pod Template:\n" +
		"  Labels:\tapp=web\n" +
		"\ttier=front\n" +
		"  Annotations:\ta: 1\n" +
		"  Service Account:\tweb\n" +
		"  Containers:\n" +
		"   web:\n" +
		"    Image:\tnginx:1\n" +
		"    Ports:\t80/TCP, 443/TCP\n" +
		"    Host Ports:\t0/TCP, 8443/TCP\n" +
		"    Command:\n" +
		"      nginx\n" +
		"    Args:\n" +
		"      -g\n" +
		"      daemon off;\n" +
		"    Limits:\n" +
		"      cpu:\t500m\n" +
		"      memory:\t128Mi\n" +
		"    Requests:\n" +
		"      cpu:\t100m\n" +
		"    Readiness:\thttp-get http://:80/healthz delay=0s timeout=1s period=10s #success=1 #failure=3\n" +
		"    Environment:\n" +
		"      MODE:\tprod\n" +
		"      PASSWORD:\t<set to the key 'password' in secret 'db'>\tOptional: false\n" +
		"    Mounts:\n" +
		"      /etc/nginx from config (ro)\n" +
		"      /tmp from scratch (rw)\n" +
		"  Volumes:\n" +
		"   config:\n" +
		"    Type:\tConfigMap (a volume populated by a ConfigMap)\n" +
		"    Name:\tweb-config\n" +
		"    Optional:\tfalse\n" +
		"   scratch:\n" +
		"    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n" +
		"    Medium:\t\n" +
		"    SizeLimit:\t<unset>\n" +
		"  Node-Selectors:\tdisk=ssd\n" +
		"  Tolerations:\tdedicated=web:NoSchedule\n" +
		"\tnode.kubernetes.io/unreachable:NoExecute op=Exists for 300s\n"
	var b strings.Builder
	describePodTemplate(&b, tmpl)
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRevisionReplicaSet(t *testing.T) {
	rs := func(name, revision string) *appsv1.ReplicaSet {
		md := &metav1.ObjectMeta{Name: name}
		if revision != "" {
			md.Annotations = map[string]string{revisionAnnotation: revision}
		}
		return &appsv1.ReplicaSet{Metadata: md}
	}
	d := &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web"}}
	all := []*appsv1.ReplicaSet{rs("r3", "3"), rs("bad", "x"), rs("r1", "1"), rs("r5", "5")}
	cases := []struct {
		rss  []*appsv1.ReplicaSet
		to   int64
		want string
		err  string
	}{
		{all, 0, "r3", ""},
		{all, 1, "r1", ""},
		{all, 4, "", "unable to find specified revision 4 in history"},
		{all[:1], 0, "", `no rollout history found for deployment "web"`},
		{[]*appsv1.ReplicaSet{rs("none", ""), rs("r1", "1")}, 0, "none", ""}, // no annotation: revision 0
	}
	for _, tc := range cases {
		got, err := revisionReplicaSet(d, tc.rss, tc.to)
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) || (err == nil && got.GetMetadata().GetName() != tc.want) {
			t.Errorf("to %d: got %v %v, want %s %q", tc.to, got.GetMetadata().GetName(), err, tc.want, tc.err)
		}
	}

	ann := rollbackAnnotations(
		map[string]string{revisionAnnotation: "5", lastAppliedKey: "{}", "owner": "ops"},
		map[string]string{revisionAnnotation: "2", changeCauseAnnotation: "v2", "team": "web"})
	want := map[string]string{revisionAnnotation: "5", lastAppliedKey: "{}", changeCauseAnnotation: "v2", "team": "web"}
	if !proto.Equal(&metav1.ObjectMeta{Annotations: ann}, &metav1.ObjectMeta{Annotations: want}) {
		t.Errorf("rollbackAnnotations = %v, want %v", ann, want)
	}
}
