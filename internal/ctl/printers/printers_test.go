package printers_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	appsv1 "github.com/rafter-dev/rafter/gen/rafter/apps/v1"
	coordinationv1 "github.com/rafter-dev/rafter/gen/rafter/coordination/v1"
	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	"github.com/rafter-dev/rafter/gen/rafter/kinds"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
	networkingv1 "github.com/rafter-dev/rafter/gen/rafter/networking/v1"
	rbacv1 "github.com/rafter-dev/rafter/gen/rafter/rbac/v1"
	storagev1 "github.com/rafter-dev/rafter/gen/rafter/storage/v1"
	"github.com/rafter-dev/rafter/internal/ctl/printers"
)

// now is the time every test's AGE is counted to.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// ago is the timestamp d before now.
func ago(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-d)) }

const day = 24 * time.Hour

// meta is the metadata of an object named name in namespace ns created age ago.
func meta(ns, name string, age time.Duration) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: ago(age)}
}

func kind(t *testing.T, name string) kinds.Kind {
	t.Helper()
	k, ok := kinds.ByKind(name)
	if !ok {
		t.Fatalf("no kind %s", name)
	}
	return k
}

func running(name string, ready bool, restarts int32) *corev1.ContainerStatus {
	return &corev1.ContainerStatus{
		Name: name, Ready: ready, RestartCount: restarts,
		State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Hour)}},
	}
}

func containers(names ...string) []*corev1.Container {
	var cs []*corev1.Container
	for _, n := range names {
		cs = append(cs, &corev1.Container{Name: n, Image: n + ":1.0"})
	}
	return cs
}

func pods() []proto.Message {
	restarted := running("sidecar", true, 3)
	restarted.LastState = &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(5 * time.Minute)}}
	return []proto.Message{
		&corev1.Pod{
			Metadata: meta("default", "web-0", 3*time.Hour+20*time.Minute),
			Spec:     &corev1.PodSpec{Containers: containers("web", "sidecar"), NodeName: "node-1"},
			Status: &corev1.PodStatus{
				Phase: "Running", PodIP: "10.244.1.5",
				ContainerStatuses: []*corev1.ContainerStatus{running("web", true, 0), restarted},
			},
		},
		&corev1.Pod{
			Metadata: meta("default", "crash", 45*time.Second),
			Spec:     &corev1.PodSpec{Containers: containers("app")},
			Status: &corev1.PodStatus{
				Phase: "Running", PodIPs: []*corev1.PodIP{{Ip: "10.244.2.9"}},
				ContainerStatuses: []*corev1.ContainerStatus{{
					Name: "app", RestartCount: 7,
					State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				}},
			},
		},
		&corev1.Pod{
			Metadata: meta("kube-system", "pending", 10*day),
			Spec: &corev1.PodSpec{
				Containers:     containers("app"),
				ReadinessGates: []*corev1.PodReadinessGate{{ConditionType: "example.com/lb"}, {ConditionType: "example.com/dns"}},
			},
			Status: &corev1.PodStatus{
				Phase: "Pending", NominatedNodeName: "node-2",
				Conditions: []*corev1.PodCondition{{Type: "example.com/dns", Status: "True"}, {Type: "example.com/lb", Status: "False"}},
			},
		},
		&corev1.Pod{
			Metadata: meta("default", "init", 2*time.Minute+30*time.Second),
			Spec:     &corev1.PodSpec{InitContainers: containers("migrate", "seed"), Containers: containers("app")},
			Status: &corev1.PodStatus{
				Phase: "Pending",
				InitContainerStatuses: []*corev1.ContainerStatus{
					{Name: "migrate", State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}},
					running("seed", false, 0),
				},
				ContainerStatuses: []*corev1.ContainerStatus{{
					Name: "app", State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}},
				}},
			},
		},
		&corev1.Pod{
			Metadata: &metav1.ObjectMeta{Name: "leaving", Namespace: "default", CreationTimestamp: ago(day), DeletionTimestamp: ago(0)},
			Spec:     &corev1.PodSpec{Containers: containers("app")},
			Status:   &corev1.PodStatus{Phase: "Running", ContainerStatuses: []*corev1.ContainerStatus{running("app", true, 0)}},
		},
		&corev1.Pod{
			Metadata: meta("default", "job-x7k2p", 400*day),
			Spec:     &corev1.PodSpec{Containers: containers("job")},
			Status: &corev1.PodStatus{
				Phase: "Succeeded",
				ContainerStatuses: []*corev1.ContainerStatus{{
					Name: "job", State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}},
				}},
			},
		},
		&corev1.Pod{
			Metadata: meta("default", "oom", 9*time.Hour),
			Spec:     &corev1.PodSpec{Containers: containers("app")},
			Status: &corev1.PodStatus{
				Phase: "Running",
				ContainerStatuses: []*corev1.ContainerStatus{{
					Name: "app", RestartCount: 1,
					State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9}},
				}},
			},
		},
		&corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "bare", Namespace: "default"}},
	}
}

func services() []proto.Message {
	tcp := func(port, nodePort int32) *corev1.ServicePort {
		return &corev1.ServicePort{Protocol: "TCP", Port: port, TargetPort: structpb.NewNumberValue(float64(port)), NodePort: nodePort}
	}
	return []proto.Message{
		&corev1.Service{
			Metadata: meta("default", "kubernetes", 30*day),
			Spec: &corev1.ServiceSpec{
				Type: "ClusterIP", ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"},
				Ports: []*corev1.ServicePort{{Name: "https", Protocol: "TCP", Port: 443, TargetPort: structpb.NewNumberValue(6443)}},
			},
		},
		&corev1.Service{
			Metadata: meta("default", "web", 5*time.Minute),
			Spec: &corev1.ServiceSpec{
				Type: "NodePort", ClusterIP: "10.96.12.7", ClusterIPs: []string{"10.96.12.7"},
				Ports:    []*corev1.ServicePort{tcp(80, 30080), tcp(443, 30443)},
				Selector: map[string]string{"app": "web", "tier": "frontend"},
			},
		},
		&corev1.Service{
			Metadata: meta("default", "db", 2*time.Hour),
			Spec: &corev1.ServiceSpec{
				Type: "ClusterIP", ClusterIP: "None", ClusterIPs: []string{"None"},
				Ports:    []*corev1.ServicePort{{Port: 5432, Protocol: "TCP"}},
				Selector: map[string]string{"app": "db"},
			},
		},
		&corev1.Service{
			Metadata: meta("default", "lb", 50*time.Hour),
			Spec: &corev1.ServiceSpec{
				Type: "LoadBalancer", ClusterIP: "10.96.3.3", ClusterIPs: []string{"10.96.3.3"},
				Ports: []*corev1.ServicePort{tcp(80, 31000), {Port: 53, NodePort: 31053, Protocol: "UDP"}},
			},
		},
		&corev1.Service{
			Metadata: meta("default", "lb-ready", 50*time.Hour),
			Spec: &corev1.ServiceSpec{
				Type: "LoadBalancer", ClusterIP: "10.96.3.4", ClusterIPs: []string{"10.96.3.4"},
				Ports: []*corev1.ServicePort{tcp(80, 31001)},
			},
			Status: &corev1.ServiceStatus{LoadBalancer: &corev1.LoadBalancerStatus{Ingress: []*corev1.LoadBalancerIngress{
				{Ip: "203.0.113.10"}, {Hostname: "lb.example.com"},
			}}},
		},
		&corev1.Service{
			Metadata: meta("default", "ext", 10*time.Second),
			Spec:     &corev1.ServiceSpec{Type: "ExternalName", ExternalName: "db.example.com"},
		},
		&corev1.Service{
			Metadata: meta("default", "pinned", 10*time.Second),
			Spec: &corev1.ServiceSpec{
				Type: "ClusterIP", ClusterIP: "10.96.9.9", ExternalIPs: []string{"198.51.100.1", "198.51.100.2"},
				Ports: []*corev1.ServicePort{tcp(8080, 0)},
			},
		},
	}
}

func deployments() []proto.Message {
	return []proto.Message{
		&appsv1.Deployment{
			Metadata: meta("default", "web", 3*day+4*time.Hour),
			Spec: &appsv1.DeploymentSpec{
				Replicas: proto.Int32(3),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "frontend"}},
				Template: &corev1.PodTemplateSpec{Spec: &corev1.PodSpec{Containers: containers("nginx", "exporter")}},
			},
			Status: &appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2},
		},
		&appsv1.Deployment{
			Metadata: meta("default", "db", 90*time.Second),
			Spec: &appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"app": "db"},
					MatchExpressions: []*metav1.LabelSelectorRequirement{
						{Key: "env", Operator: "In", Values: []string{"prod", "dev"}},
						{Key: "canary", Operator: "DoesNotExist"},
					},
				},
				Template: &corev1.PodTemplateSpec{Spec: &corev1.PodSpec{Containers: containers("postgres")}},
			},
		},
	}
}

func TestPrintTables(t *testing.T) {
	tests := []struct {
		name string
		kind string
		objs []proto.Message
		opts printers.Options
		want string
	}{{
		name: "pods",
		kind: "Pod",
		objs: pods(),
		want: `
NAME        READY   STATUS             RESTARTS     AGE
web-0       2/2     Running            3 (5m ago)   3h20m
crash       0/1     CrashLoopBackOff   7            45s
pending     0/1     Pending            0            10d
init        0/1     Init:1/2           0            2m30s
leaving     1/1     Terminating        0            24h
job-x7k2p   0/1     Completed          0            400d
oom         0/1     Signal:9           1            9h
bare        0/0                        0            <unknown>
`,
	}, {
		name: "pods wide, all namespaces",
		kind: "Pod",
		objs: pods(),
		opts: printers.Options{Output: "wide", AllNamespaces: true},
		want: `
NAMESPACE     NAME        READY   STATUS             RESTARTS     AGE         IP           NODE     NOMINATED NODE   READINESS GATES
default       web-0       2/2     Running            3 (5m ago)   3h20m       10.244.1.5   node-1   <none>           <none>
default       crash       0/1     CrashLoopBackOff   7            45s         10.244.2.9   <none>   <none>           <none>
kube-system   pending     0/1     Pending            0            10d         <none>       <none>   node-2           1/2
default       init        0/1     Init:1/2           0            2m30s       <none>       <none>   <none>           <none>
default       leaving     1/1     Terminating        0            24h         <none>       <none>   <none>           <none>
default       job-x7k2p   0/1     Completed          0            400d        <none>       <none>   <none>           <none>
default       oom         0/1     Signal:9           1            9h          <none>       <none>   <none>           <none>
default       bare        0/0                        0            <unknown>   <none>       <none>   <none>           <none>
`,
	}, {
		name: "services",
		kind: "Service",
		objs: services(),
		want: `
NAME         TYPE           CLUSTER-IP   EXTERNAL-IP                 PORT(S)                      AGE
kubernetes   ClusterIP      10.96.0.1    <none>                      443/TCP                      30d
web          NodePort       10.96.12.7   <none>                      80:30080/TCP,443:30443/TCP   5m
db           ClusterIP      None         <none>                      5432/TCP                     120m
lb           LoadBalancer   10.96.3.3    <pending>                   80:31000/TCP,53:31053/UDP    2d2h
lb-ready     LoadBalancer   10.96.3.4    203.0.113.10,...            80:31001/TCP                 2d2h
ext          ExternalName   <none>       db.example.com              <none>                       10s
pinned       ClusterIP      10.96.9.9    198.51.100.1,198.51.100.2   8080/TCP                     10s
`,
	}, {
		name: "services wide",
		kind: "Service",
		objs: services()[:5],
		opts: printers.Options{Output: "wide", NoHeaders: true},
		want: `
kubernetes   ClusterIP      10.96.0.1    <none>                        443/TCP                      30d    <none>
web          NodePort       10.96.12.7   <none>                        80:30080/TCP,443:30443/TCP   5m     app=web,tier=frontend
db           ClusterIP      None         <none>                        5432/TCP                     120m   app=db
lb           LoadBalancer   10.96.3.3    <pending>                     80:31000/TCP,53:31053/UDP    2d2h   <none>
lb-ready     LoadBalancer   10.96.3.4    203.0.113.10,lb.example.com   80:31001/TCP                 2d2h   <none>
`,
	}, {
		name: "deployments",
		kind: "Deployment",
		objs: deployments(),
		want: `
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           3d4h
db     0/1     0            0           90s
`,
	}, {
		name: "deployments wide, with kind",
		kind: "Deployment",
		objs: deployments(),
		opts: printers.Options{Output: "wide", WithKind: true},
		want: `
NAME                  READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS       IMAGES                   SELECTOR
deployment.apps/web   2/3     3            2           3d4h   nginx,exporter   nginx:1.0,exporter:1.0   app=web,tier=frontend
deployment.apps/db    0/1     0            0           90s    postgres         postgres:1.0             app=db,!canary,env in (dev,prod)
`,
	}, {
		name: "replicasets",
		kind: "ReplicaSet",
		objs: []proto.Message{&appsv1.ReplicaSet{
			Metadata: meta("default", "web-7d9f8b6c5d", 3*day),
			Spec:     &appsv1.ReplicaSetSpec{Replicas: proto.Int32(3)},
			Status:   &appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 1},
		}},
		want: `
NAME             DESIRED   CURRENT   READY   AGE
web-7d9f8b6c5d   3         3         1       3d
`,
	}, {
		name: "daemonsets",
		kind: "DaemonSet",
		objs: []proto.Message{
			&appsv1.DaemonSet{
				Metadata: meta("kube-system", "proxy", 7*day),
				Spec: &appsv1.DaemonSetSpec{Template: &corev1.PodTemplateSpec{Spec: &corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
				}}},
				Status: &appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 3, NumberAvailable: 2},
			},
			&appsv1.DaemonSet{Metadata: meta("kube-system", "logs", 20*time.Minute)},
		},
		want: `
NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR            AGE
proxy   3         3         2       3            2           kubernetes.io/os=linux   7d
logs    0         0         0       0            0           <none>                   20m
`,
	}, {
		name: "statefulsets",
		kind: "StatefulSet",
		objs: []proto.Message{&appsv1.StatefulSet{
			Metadata: meta("default", "db", 6*time.Hour),
			Spec:     &appsv1.StatefulSetSpec{Replicas: proto.Int32(3)},
			Status:   &appsv1.StatefulSetStatus{ReadyReplicas: 3},
		}},
		want: `
NAME   READY   AGE
db     3/3     6h
`,
	}, {
		name: "configmaps",
		kind: "ConfigMap",
		objs: []proto.Message{
			&corev1.ConfigMap{Metadata: meta("default", "app-config", 12*time.Minute), Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": {1}}},
			&corev1.ConfigMap{Metadata: meta("default", "empty", 12*time.Minute)},
		},
		want: `
NAME         DATA   AGE
app-config   3      12m
empty        0      12m
`,
	}, {
		name: "secrets",
		kind: "Secret",
		objs: []proto.Message{
			&corev1.Secret{Metadata: meta("default", "db-creds", time.Hour), Type: "Opaque",
				Data: map[string][]byte{"user": []byte("app")}, StringData: map[string]string{"user": "app", "password": "x"}},
			&corev1.Secret{Metadata: meta("default", "tls", time.Hour), Type: "kubernetes.io/tls",
				Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}},
		},
		want: `
NAME       TYPE                DATA   AGE
db-creds   Opaque              2      60m
tls        kubernetes.io/tls   2      60m
`,
	}, {
		name: "namespaces, all namespaces changes nothing",
		kind: "Namespace",
		objs: []proto.Message{
			&corev1.Namespace{Metadata: meta("", "default", 30*day), Status: &corev1.NamespaceStatus{Phase: "Active"}},
			&corev1.Namespace{Metadata: meta("", "old", 30*day), Status: &corev1.NamespaceStatus{Phase: "Terminating"}},
		},
		opts: printers.Options{AllNamespaces: true},
		want: `
NAME      STATUS        AGE
default   Active        30d
old       Terminating   30d
`,
	}, {
		name: "nodes",
		kind: "Node",
		objs: nodes(),
		want: `
NAME     STATUS                        ROLES                  AGE   VERSION
node-1   Ready                         control-plane,master   40d   v1.31.0
node-2   NotReady,SchedulingDisabled   <none>                 3d    v1.31.0
node-3   Unknown                       worker                 5m    
`,
	}, {
		name: "nodes wide",
		kind: "Node",
		objs: nodes(),
		opts: printers.Options{Output: "wide"},
		want: `
NAME     STATUS                        ROLES                  AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE              KERNEL-VERSION   CONTAINER-RUNTIME
node-1   Ready                         control-plane,master   40d   v1.31.0   10.0.0.1      203.0.113.1   Debian GNU/Linux 12   6.1.0-18-amd64   containerd://1.7.13
node-2   NotReady,SchedulingDisabled   <none>                 3d    v1.31.0   10.0.0.2      <none>        <unknown>             <unknown>        <unknown>
node-3   Unknown                       worker                 5m              <none>        <none>        <unknown>             <unknown>        <unknown>
`,
	}, {
		name: "endpoints",
		kind: "Endpoints",
		objs: []proto.Message{
			&corev1.Endpoints{
				Metadata: meta("default", "web", time.Minute),
				Subsets: []*corev1.EndpointSubset{{
					Addresses: []*corev1.EndpointAddress{{Ip: "10.244.1.5"}, {Ip: "10.244.2.9"}},
					Ports:     []*corev1.EndpointPort{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9090}},
				}},
			},
			&corev1.Endpoints{
				Metadata: meta("default", "db", time.Minute),
				Subsets:  []*corev1.EndpointSubset{{Addresses: []*corev1.EndpointAddress{{Ip: "10.244.3.3"}}}},
			},
			&corev1.Endpoints{
				Metadata: meta("default", "v6", time.Minute),
				Subsets: []*corev1.EndpointSubset{{
					Addresses: []*corev1.EndpointAddress{{Ip: "fd00::1"}},
					Ports:     []*corev1.EndpointPort{{Port: 80}},
				}},
			},
			&corev1.Endpoints{Metadata: meta("default", "none", time.Minute)},
		},
		want: `
NAME   ENDPOINTS                                                     AGE
web    10.244.1.5:8080,10.244.2.9:8080,10.244.1.5:9090 + 1 more...   60s
db     10.244.3.3                                                    60s
v6     [fd00::1]:80                                                  60s
none   <none>                                                        60s
`,
	}, {
		name: "persistentvolumes",
		kind: "PersistentVolume",
		objs: []proto.Message{
			&corev1.PersistentVolume{
				Metadata: meta("", "pv-data", 2*day),
				Spec: &corev1.PersistentVolumeSpec{
					Capacity:                      map[string]*structpb.Value{"storage": structpb.NewStringValue("10Gi")},
					AccessModes:                   []string{"ReadWriteMany", "ReadWriteOnce"},
					PersistentVolumeReclaimPolicy: "Retain",
					StorageClassName:              "manual",
					ClaimRef:                      &corev1.ObjectReference{Namespace: "default", Name: "data"},
					VolumeMode:                    proto.String("Filesystem"),
				},
				Status: &corev1.PersistentVolumeStatus{Phase: "Bound"},
			},
			&corev1.PersistentVolume{
				Metadata: meta("", "pv-free", 2*day),
				Spec: &corev1.PersistentVolumeSpec{
					Capacity:                      map[string]*structpb.Value{"storage": structpb.NewNumberValue(1000000000)},
					AccessModes:                   []string{"ReadWriteOncePod", "ReadOnlyMany"},
					PersistentVolumeReclaimPolicy: "Delete",
				},
				Status: &corev1.PersistentVolumeStatus{Phase: "Failed", Reason: "Recycler"},
			},
		},
		want: `
NAME      CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS   CLAIM          STORAGECLASS   VOLUMEATTRIBUTESCLASS   REASON     AGE
pv-data   10Gi       RWO,RWX        Retain           Bound    default/data   manual         <unset>                            2d
pv-free   1G         ROX,RWOP       Delete           Failed                                 <unset>                 Recycler   2d
`,
	}, {
		name: "persistentvolumeclaims wide",
		kind: "PersistentVolumeClaim",
		objs: []proto.Message{
			&corev1.PersistentVolumeClaim{
				Metadata: meta("default", "data", 2*day),
				Spec: &corev1.PersistentVolumeClaimSpec{
					AccessModes: []string{"ReadWriteOnce"}, VolumeName: "pv-data", StorageClassName: proto.String("manual"),
					Resources: &corev1.VolumeResourceRequirements{Requests: map[string]*structpb.Value{"storage": structpb.NewStringValue("5Gi")}},
				},
				Status: &corev1.PersistentVolumeClaimStatus{
					Phase: "Bound", AccessModes: []string{"ReadWriteOnce"},
					Capacity: map[string]*structpb.Value{"storage": structpb.NewStringValue("10Gi")},
				},
			},
			&corev1.PersistentVolumeClaim{
				Metadata: &metav1.ObjectMeta{
					Name: "waiting", Namespace: "default", CreationTimestamp: ago(time.Minute),
					Annotations: map[string]string{"volume.beta.kubernetes.io/storage-class": "slow"},
				},
				Spec:   &corev1.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"}, VolumeAttributesClassName: proto.String("gold")},
				Status: &corev1.PersistentVolumeClaimStatus{Phase: "Pending"},
			},
		},
		opts: printers.Options{Output: "wide"},
		want: `
NAME      STATUS    VOLUME    CAPACITY   ACCESS MODES   STORAGECLASS   VOLUMEATTRIBUTESCLASS   AGE   VOLUMEMODE
data      Bound     pv-data   10Gi       RWO            manual         <unset>                 2d    <unset>
waiting   Pending                                       slow           gold                    60s   <unset>
`,
	}, {
		name: "ingresses",
		kind: "Ingress",
		objs: []proto.Message{
			&networkingv1.Ingress{
				Metadata: meta("default", "site", 4*time.Hour),
				Spec: &networkingv1.IngressSpec{
					IngressClassName: proto.String("nginx"),
					Rules:            []*networkingv1.IngressRule{{Host: "example.com"}, {Host: "www.example.com"}},
					Tls:              []*networkingv1.IngressTLS{{Hosts: []string{"example.com"}}},
				},
				Status: &networkingv1.IngressStatus{LoadBalancer: &networkingv1.IngressLoadBalancerStatus{
					Ingress: []*networkingv1.IngressLoadBalancerIngress{{Ip: "192.0.2.7"}},
				}},
			},
			&networkingv1.Ingress{
				Metadata: meta("default", "catchall", 4*time.Hour),
				Spec:     &networkingv1.IngressSpec{Rules: []*networkingv1.IngressRule{{}}},
			},
			&networkingv1.Ingress{
				Metadata: meta("default", "many", 4*time.Hour),
				Spec: &networkingv1.IngressSpec{Rules: []*networkingv1.IngressRule{
					{Host: "a.test"}, {Host: "b.test"}, {Host: "c.test"}, {Host: "d.test"}, {Host: "e.test"},
				}},
			},
		},
		want: `
NAME       CLASS    HOSTS                              ADDRESS     PORTS     AGE
site       nginx    example.com,www.example.com        192.0.2.7   80, 443   4h
catchall   <none>   *                                              80        4h
many       <none>   a.test,b.test,c.test + 2 more...               80        4h
`,
	}, {
		name: "serviceaccounts",
		kind: "ServiceAccount",
		objs: []proto.Message{
			&corev1.ServiceAccount{Metadata: meta("default", "default", 30*day)},
			&corev1.ServiceAccount{Metadata: meta("default", "builder", 30*day), Secrets: []*corev1.ObjectReference{{Name: "builder-token"}}},
		},
		want: `
NAME      SECRETS   AGE
default   0         30d
builder   1         30d
`,
	}, {
		name: "events",
		kind: "Event",
		objs: events(),
		want: `
LAST SEEN   TYPE      REASON             OBJECT           MESSAGE
2m          Normal    Scheduled          pod/web-0        Successfully assigned default/web-0 to node-1
30s         Warning   FailedScheduling   pod/pending      0/3 nodes are available: 3 Insufficient cpu.
5s          Normal    Started            node             Node started...
<unknown>   Normal    Sync               deployment/web   from the new API
`,
	}, {
		name: "events wide, all namespaces",
		kind: "Event",
		objs: events(),
		opts: printers.Options{Output: "wide", AllNamespaces: true},
		want: `
NAMESPACE   LAST SEEN   TYPE      REASON             OBJECT           SUBOBJECT              SOURCE              MESSAGE                                         FIRST SEEN   COUNT   NAME
default     2m          Normal    Scheduled          pod/web-0                               default-scheduler   Successfully assigned default/web-0 to node-1   2m           1       web-0.17a
default     30s         Warning   FailedScheduling   pod/pending      spec.containers{app}   scheduler, node-9   0/3 nodes are available: 3 Insufficient cpu.    10m          12      pending.17b
default     5s          Normal    Started            node                                                        Node started...                                 5s           1       node.17c
default     <unknown>   Normal    Sync               deployment/web                          controller          from the new API                                <unknown>    4       web.17d
`,
	}, {
		name: "leases",
		kind: "Lease",
		objs: []proto.Message{
			&coordinationv1.Lease{Metadata: meta("kube-node-lease", "node-1", 40*day), Spec: &coordinationv1.LeaseSpec{HolderIdentity: proto.String("node-1")}},
			&coordinationv1.Lease{Metadata: meta("kube-node-lease", "free", 40*day)},
		},
		want: `
NAME     HOLDER   AGE
node-1   node-1   40d
free              40d
`,
	}, {
		name: "roles",
		kind: "Role",
		objs: []proto.Message{
			&rbacv1.Role{Metadata: meta("default", "reader", 2*time.Hour)},
			&rbacv1.Role{Metadata: &metav1.ObjectMeta{Name: "new"}},
		},
		want: `
NAME     CREATED AT
reader   2025-06-01T10:00:00Z
new      <unknown>
`,
	}, {
		name: "clusterroles, all namespaces",
		kind: "ClusterRole",
		objs: []proto.Message{&rbacv1.ClusterRole{Metadata: meta("", "admin", 400*day)}},
		opts: printers.Options{AllNamespaces: true},
		want: `
NAME    CREATED AT
admin   2024-04-27T12:00:00Z
`,
	}, {
		name: "rolebindings wide",
		kind: "RoleBinding",
		objs: []proto.Message{&rbacv1.RoleBinding{
			Metadata: meta("default", "read-pods", 3*time.Minute),
			RoleRef:  &rbacv1.RoleRef{ApiGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
			Subjects: []*rbacv1.Subject{
				{Kind: "User", Name: "jane"}, {Kind: "Group", Name: "devs"}, {Kind: "User", Name: "joe"},
				{Kind: "ServiceAccount", Namespace: "ci", Name: "builder"},
			},
		}},
		opts: printers.Options{Output: "wide"},
		want: `
NAME        ROLE          AGE   USERS       GROUPS   SERVICEACCOUNTS
read-pods   Role/reader   3m    jane, joe   devs     ci/builder
`,
	}, {
		name: "clusterrolebindings",
		kind: "ClusterRoleBinding",
		objs: []proto.Message{&rbacv1.ClusterRoleBinding{
			Metadata: meta("", "cluster-admin", 40*day),
			RoleRef:  &rbacv1.RoleRef{Kind: "ClusterRole", Name: "cluster-admin"},
		}},
		want: `
NAME            ROLE                        AGE
cluster-admin   ClusterRole/cluster-admin   40d
`,
	}, {
		name: "storageclasses",
		kind: "StorageClass",
		objs: []proto.Message{
			&storagev1.StorageClass{
				Metadata: &metav1.ObjectMeta{
					Name: "standard", CreationTimestamp: ago(40 * day),
					Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
				},
				Provisioner: "rancher.io/local-path",
			},
			&storagev1.StorageClass{
				Metadata:             meta("", "fast", 40*day),
				Provisioner:          "ebs.csi.aws.com",
				ReclaimPolicy:        proto.String("Retain"),
				VolumeBindingMode:    proto.String("WaitForFirstConsumer"),
				AllowVolumeExpansion: proto.Bool(true),
			},
		},
		want: `
NAME                 PROVISIONER             RECLAIMPOLICY   VOLUMEBINDINGMODE      ALLOWVOLUMEEXPANSION   AGE
standard (default)   rancher.io/local-path   Delete          Immediate              false                  40d
fast                 ebs.csi.aws.com         Retain          WaitForFirstConsumer   true                   40d
`,
	}, {
		name: "unknown kind",
		kind: "Widget",
		objs: []proto.Message{&corev1.ConfigMap{Metadata: meta("default", "w", 90*time.Minute)}},
		opts: printers.Options{AllNamespaces: true, Output: "wide"},
		want: `
NAMESPACE   NAME   AGE
default     w      90m
`,
	}, {
		name: "no objects print nothing",
		kind: "Pod",
		want: "\n",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := kinds.ByKind(tc.kind)
			if !ok {
				k = kinds.Kind{Version: "v1", Kind: tc.kind, Namespaced: true}
			}
			tc.opts.Now = now
			var b bytes.Buffer
			if err := printers.Print(&b, k, tc.objs, tc.opts); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func nodes() []proto.Message {
	return []proto.Message{
		&corev1.Node{
			Metadata: &metav1.ObjectMeta{Name: "node-1", CreationTimestamp: ago(40 * day), Labels: map[string]string{
				"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master", "kubernetes.io/os": "linux",
			}},
			Status: &corev1.NodeStatus{
				Conditions: []*corev1.NodeCondition{{Type: "MemoryPressure", Status: "False"}, {Type: "Ready", Status: "True"}},
				Addresses:  []*corev1.NodeAddress{{Type: "Hostname", Address: "node-1"}, {Type: "ExternalIP", Address: "203.0.113.1"}, {Type: "InternalIP", Address: "10.0.0.1"}},
				NodeInfo: &corev1.NodeSystemInfo{
					KubeletVersion: "v1.31.0", OsImage: "Debian GNU/Linux 12", KernelVersion: "6.1.0-18-amd64", ContainerRuntimeVersion: "containerd://1.7.13",
				},
			},
		},
		&corev1.Node{
			Metadata: meta("", "node-2", 3*day),
			Spec:     &corev1.NodeSpec{Unschedulable: true},
			Status: &corev1.NodeStatus{
				Conditions: []*corev1.NodeCondition{{Type: "Ready", Status: "Unknown"}},
				Addresses:  []*corev1.NodeAddress{{Type: "InternalIP", Address: "10.0.0.2"}},
				NodeInfo:   &corev1.NodeSystemInfo{KubeletVersion: "v1.31.0"},
			},
		},
		&corev1.Node{Metadata: &metav1.ObjectMeta{
			Name: "node-3", CreationTimestamp: ago(5 * time.Minute), Labels: map[string]string{"node-role.kubernetes.io/worker": "true"},
		}},
	}
}

func events() []proto.Message {
	return []proto.Message{
		&corev1.Event{
			Metadata:       meta("default", "web-0.17a", 2*time.Minute),
			InvolvedObject: &corev1.ObjectReference{Kind: "Pod", Name: "web-0", Namespace: "default"},
			Reason:         "Scheduled", Message: "Successfully assigned default/web-0 to node-1", Type: "Normal",
			Source:         &corev1.EventSource{Component: "default-scheduler"},
			FirstTimestamp: ago(2 * time.Minute), LastTimestamp: ago(2 * time.Minute), Count: 1,
		},
		&corev1.Event{
			Metadata:       meta("default", "pending.17b", 10*time.Minute),
			InvolvedObject: &corev1.ObjectReference{Kind: "Pod", Name: "pending", FieldPath: "spec.containers{app}"},
			Reason:         "FailedScheduling", Message: "0/3 nodes are available: 3 Insufficient cpu.\n", Type: "Warning",
			Source: &corev1.EventSource{Component: "scheduler"}, ReportingInstance: "node-9",
			FirstTimestamp: ago(10 * time.Minute), LastTimestamp: ago(30 * time.Second), Count: 12,
		},
		&corev1.Event{
			Metadata:       meta("default", "node.17c", 5*time.Second),
			InvolvedObject: &corev1.ObjectReference{Kind: "Node"},
			Reason:         "Started", Message: "Node started\nwith a second line", Type: "Normal",
			EventTime: ago(5 * time.Second),
		},
		&corev1.Event{
			Metadata:       meta("default", "web.17d", time.Minute),
			InvolvedObject: &corev1.ObjectReference{Kind: "Deployment", Name: "web"},
			Reason:         "Sync", Message: "from the new API", Type: "Normal", ReportingComponent: "controller",
			Series: &corev1.EventSeries{Count: 4},
		},
	}
}

func TestPrintName(t *testing.T) {
	var b bytes.Buffer
	objs := deployments()
	if err := printers.Print(&b, kind(t, "Deployment"), objs, printers.Options{Output: "name"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "deployment.apps/web\ndeployment.apps/db\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestResourceName(t *testing.T) {
	kindOf := kind
	for kind, want := range map[string]string{
		"Pod":                "pod/x",
		"Endpoints":          "endpoints/x",
		"Deployment":         "deployment.apps/x",
		"Ingress":            "ingress.networking.k8s.io/x",
		"ClusterRoleBinding": "clusterrolebinding.rbac.authorization.k8s.io/x",
		"StorageClass":       "storageclass.storage.k8s.io/x",
		"Lease":              "lease.coordination.k8s.io/x",
	} {
		if got := printers.ResourceName(kindOf(t, kind), "x"); got != want {
			t.Errorf("ResourceName(%s) = %q, want %q", kind, got, want)
		}
	}
}

func TestPrintUnknownOutput(t *testing.T) {
	var b bytes.Buffer
	err := printers.Print(&b, kind(t, "Pod"), pods(), printers.Options{Output: "jsonpath"})
	if !errors.Is(err, printers.ErrUnknownOutput) {
		t.Fatalf("got %v, want ErrUnknownOutput", err)
	}
	if b.Len() != 0 {
		t.Errorf("printed %q", b.String())
	}
}

// TestHeaderAndRow checks that every kind's rows have a cell per header column, in
// every mode, and that Row is what Print prints.
func TestHeaderAndRow(t *testing.T) {
	for _, k := range kinds.All {
		for _, opts := range []printers.Options{{}, {Output: "wide"}, {AllNamespaces: true}, {Output: "wide", AllNamespaces: true, WithKind: true}} {
			opts.Now = now
			h := printers.Header(k, opts)
			if len(h) < 2 {
				t.Errorf("%s %+v: header %q", k.Kind, opts, h)
			}
			if got := h[0] == "NAMESPACE"; got != (k.Namespaced && opts.AllNamespaces) {
				t.Errorf("%s %+v: header %q", k.Kind, opts, h)
			}
			for _, obj := range []proto.Message{nil, newObject(t, k)} {
				if r := printers.Row(k, obj, opts); len(r) != len(h) {
					t.Errorf("%s %+v: row %q under header %q", k.Kind, opts, r, h)
				}
			}
		}
	}
}

// newObject is an empty object of kind k.
func newObject(t *testing.T, k kinds.Kind) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(k.Message)
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}
