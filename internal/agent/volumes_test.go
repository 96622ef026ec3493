package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func volPod(vols ...*corev1.Volume) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Namespace: "prod", Uid: "uid-1"}, Spec: &corev1.PodSpec{Volumes: vols}}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claims is a ClaimSource over fixed maps.
type claims struct {
	pvcs map[string]*corev1.PersistentVolumeClaim
	pvs  map[string]*corev1.PersistentVolume
}

func (c claims) PersistentVolumeClaim(ns, name string) (*corev1.PersistentVolumeClaim, error) {
	if p, ok := c.pvcs[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("pvc: %w", ErrNotFound)
}

func (c claims) PersistentVolume(name string) (*corev1.PersistentVolume, error) {
	if p, ok := c.pvs[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("pv: %w", ErrNotFound)
}

func TestVolumesProjectConfigMapsAndSecretsAtomically(t *testing.T) {
	root := t.TempDir()
	cms := map[string]*corev1.ConfigMap{"prod/cfg": {Data: map[string]string{"app.conf": "v=1", "other": "x"}}}
	secrets := map[string]*corev1.Secret{"prod/creds": {Data: map[string][]byte{"password": []byte("hunter2")}}}
	v := &Volumes{Root: root, Objects: objects{cms: cms, secrets: secrets}}
	pod := volPod(
		&corev1.Volume{Name: "config", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "cfg"}},
		&corev1.Volume{Name: "picked", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "cfg",
			Items: []*corev1.KeyToPath{{Key: "app.conf", Path: "conf/app.conf", Mode: proto.Int32(0o600)}}}},
		&corev1.Volume{Name: "creds", Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: proto.Int32(0o400)}},
		&corev1.Volume{Name: "maybe", Secret: &corev1.SecretVolumeSource{SecretName: "absent", Optional: proto.Bool(true)}},
		&corev1.Volume{Name: "scratch", EmptyDir: &corev1.EmptyDirVolumeSource{}},
	)
	paths, err := v.Setup(pod)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(paths["config"], "app.conf")); got != "v=1" {
		t.Fatalf("app.conf = %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(paths["config"], "app.conf")); target != "..data/app.conf" {
		t.Fatalf("app.conf links to %q, want ..data/app.conf", target)
	}
	fi, err := os.Stat(filepath.Join(paths["picked"], "conf", "app.conf"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("item with mode: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(paths["picked"], "other")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("items chose app.conf only, yet other is there")
	}
	if fi, err := os.Stat(filepath.Join(paths["creds"], "password")); err != nil || fi.Mode().Perm() != 0o400 || read(t, filepath.Join(paths["creds"], "password")) != "hunter2" {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	if entries, _ := os.ReadDir(paths["maybe"]); countVisible(entries) != 0 {
		t.Fatalf("optional absent secret has files: %v", entries)
	}
	if fi, err := os.Stat(paths["scratch"]); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Fatalf("emptyDir: %v %v", fi, err)
	}

	// An update: the new content appears, a removed key disappears, the old
	// timestamped directory is gone.
	oldData, _ := os.Readlink(filepath.Join(paths["config"], "..data"))
	cms["prod/cfg"] = &corev1.ConfigMap{Data: map[string]string{"app.conf": "v=2"}}
	if _, err := v.Setup(pod); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(paths["config"], "app.conf")); got != "v=2" {
		t.Fatalf("after update app.conf = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(paths["config"], "other")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a key removed from the ConfigMap is still projected")
	}
	if _, err := os.Stat(filepath.Join(paths["config"], oldData)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the previous data directory was left behind")
	}

	if err := v.TearDown("uid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "uid-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("TearDown left the pod's volume directory")
	}
}

func countVisible(entries []os.DirEntry) int {
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			n++
		}
	}
	return n
}

func TestVolumesErrorsNameTheVolume(t *testing.T) {
	v := &Volumes{Root: t.TempDir(), Objects: objects{cms: map[string]*corev1.ConfigMap{"prod/cfg": {Data: map[string]string{"a": "1"}}}}, Claims: claims{}}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		vol  *corev1.Volume
		want string
	}{
		{&corev1.Volume{Name: "c", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "gone"}}, `volume "c": configmap "gone" not found`},
		{&corev1.Volume{Name: "k", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "cfg", Items: []*corev1.KeyToPath{{Key: "b", Path: "b"}}}},
			`volume "k": configmap references non-existent config key: b`},
		{&corev1.Volume{Name: "esc", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "cfg", Items: []*corev1.KeyToPath{{Key: "a", Path: "../x"}}}},
			`volume "esc": invalid path "../x" in configmap volume`},
		{&corev1.Volume{Name: "h", HostPath: &corev1.HostPathVolumeSource{Path: file, Type: proto.String("Directory")}},
			`volume "h": hostPath type check failed: ` + file + ` is not a directory`},
		{&corev1.Volume{Name: "pvc", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
			`volume "pvc": persistentvolumeclaim "data" not found`},
	}
	for _, tt := range tests {
		_, err := v.Setup(volPod(tt.vol))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Message != tt.want {
			t.Errorf("%s: err = %v, want %q", tt.vol.GetName(), err, tt.want)
		}
	}
}

func TestVolumesHostPathClaimsAndMounts(t *testing.T) {
	host := t.TempDir()
	pvDir := filepath.Join(host, "pv1")
	cl := claims{
		pvcs: map[string]*corev1.PersistentVolumeClaim{"prod/data": {Spec: &corev1.PersistentVolumeClaimSpec{VolumeName: "pv1"},
			Status: &corev1.PersistentVolumeClaimStatus{Phase: "Bound"}}},
		pvs: map[string]*corev1.PersistentVolume{"pv1": {Metadata: &metav1.ObjectMeta{Name: "pv1"},
			Spec: &corev1.PersistentVolumeSpec{HostPath: &corev1.HostPathVolumeSource{Path: pvDir, Type: proto.String("DirectoryOrCreate")}}}},
	}
	v := &Volumes{Root: t.TempDir(), Objects: objects{}, Claims: cl}
	made := filepath.Join(host, "made", "here")
	paths, err := v.Setup(volPod(
		&corev1.Volume{Name: "logs", HostPath: &corev1.HostPathVolumeSource{Path: made, Type: proto.String("DirectoryOrCreate")}},
		&corev1.Volume{Name: "data", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}},
	))
	if err != nil {
		t.Fatal(err)
	}
	if paths["logs"] != made || paths["data"] != pvDir {
		t.Fatalf("paths %v", paths)
	}
	if fi, err := os.Stat(made); err != nil || !fi.IsDir() {
		t.Fatal("DirectoryOrCreate made nothing")
	}
	c := &corev1.Container{Name: "app", VolumeMounts: []*corev1.VolumeMount{
		{Name: "data", MountPath: "/var/lib/app"},
		{Name: "logs", MountPath: "/logs", SubPath: "app1", ReadOnly: true},
	}}
	mounts, err := ContainerMounts(c, paths)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{Source: pvDir, Destination: "/var/lib/app"}, {Source: filepath.Join(made, "app1"), Destination: "/logs", ReadOnly: true}}
	if len(mounts) != 2 || mounts[0] != want[0] || mounts[1] != want[1] {
		t.Fatalf("mounts %v, want %v", mounts, want)
	}
	if _, err := ContainerMounts(&corev1.Container{Name: "x", VolumeMounts: []*corev1.VolumeMount{{Name: "logs", MountPath: "/l", SubPath: "../etc"}}}, paths); err == nil {
		t.Fatal("a subPath escaping its volume was accepted")
	}
	if _, err := ContainerMounts(&corev1.Container{Name: "x", VolumeMounts: []*corev1.VolumeMount{{Name: "nope", MountPath: "/l"}}}, paths); err == nil {
		t.Fatal("a mount of an unknown volume was accepted")
	}
}

func TestVolumesMemoryEmptyDirIsTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root")
	}
	v := &Volumes{Root: t.TempDir(), Objects: objects{}}
	pod := volPod(&corev1.Volume{Name: "cache", EmptyDir: &corev1.EmptyDirVolumeSource{Medium: "Memory"}})
	paths, err := v.Setup(pod)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(paths["cache"], &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("medium Memory is not tmpfs: type %x, %v", st.Type, err)
	}
	if _, err := v.Setup(pod); err != nil { // again: no second mount
		t.Fatal(err)
	}
	if err := v.TearDown("uid-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths["cache"]); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("tmpfs emptyDir left behind")
	}
}
