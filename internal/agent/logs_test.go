package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
	metav1 "github.com/rafter-dev/rafter/gen/rafter/meta/v1"
)

func criLines(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		ts := time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339Nano)
		tag, text, _ := strings.Cut(l, ":")
		b.WriteString(ts + " stdout " + tag + " " + text + "\n")
	}
	return b.String()
}

func TestCopyLogsTailPartialAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path+".1", []byte(criLines("F:one", "F:two")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(criLines("P:thr", "F:ee", "F:four")), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := CopyLogs(context.Background(), &out, LogOptions{Tail: -1}, nil, path+".1", path); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\nthree\nfour\n" {
		t.Fatalf("all: %q", out.String())
	}
	out.Reset()
	if err := CopyLogs(context.Background(), &out, LogOptions{Tail: 2, Timestamps: true}, nil, path+".1", path); err != nil {
		t.Fatal(err)
	}
	if out.String() != "2026-01-01T00:00:00Z three\n2026-01-01T00:00:02Z four\n" {
		t.Fatalf("tail 2 with timestamps: %q", out.String())
	}
	out.Reset()
	if err := CopyLogs(context.Background(), &out, LogOptions{Tail: -1, LimitBytes: 6}, nil, path+".1", path); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntw" {
		t.Fatalf("limit 6 bytes: %q", out.String())
	}
}

// syncBuf is a goroutine-safe buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestCopyLogsFollowsAcrossRotationUntilStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path, []byte(criLines("F:first")), 0o644); err != nil {
		t.Fatal(err)
	}
	var alive atomic.Bool
	alive.Store(true)
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- CopyLogs(context.Background(), out, LogOptions{Tail: -1, Follow: true}, alive.Load, path)
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("followed %q, want %q", out.String(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("first\n")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	_, _ = f.WriteString(ts + " stdout F sec") // half a line first
	time.Sleep(250 * time.Millisecond)
	_, _ = f.WriteString("ond\n")
	f.Close()
	waitFor("first\nsecond\n")
	// Rotation: the file is renamed away and a new one started.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(ts+" stderr F third\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("first\nsecond\nthird\n")
	alive.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
}

func TestPodFiles(t *testing.T) {
	dir := t.TempDir()
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web-0", Namespace: "prod"},
		Spec: &corev1.PodSpec{Subdomain: "web", HostAliases: []*corev1.HostAlias{{Ip: "10.0.0.9", Hostnames: []string{"db", "db.local"}}}}}
	mounts, err := PodFiles(dir, pod, "10.244.1.5", DNSConfig{Servers: []string{"10.96.0.10"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 3 || mounts[0].Destination != "/etc/hostname" || mounts[2].Destination != "/etc/resolv.conf" {
		t.Fatalf("mounts %v", mounts)
	}
	if got := read(t, filepath.Join(dir, "hostname")); got != "web-0\n" {
		t.Fatalf("hostname %q", got)
	}
	hosts := read(t, filepath.Join(dir, "hosts"))
	for _, want := range []string{"127.0.0.1\tlocalhost", "10.244.1.5\tweb-0.web.prod.svc.cluster.local\tweb-0", "10.0.0.9\tdb\tdb.local"} {
		if !strings.Contains(hosts, want) {
			t.Fatalf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	want := "search prod.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
	if got := read(t, filepath.Join(dir, "resolv.conf")); got != want {
		t.Fatalf("resolv.conf %q, want %q", got, want)
	}
	pod.Spec.DnsPolicy = "Default"
	if _, err := PodFiles(dir, pod, "10.244.1.5", DNSConfig{HostResolv: "nameserver 192.0.2.1\nsearch example.org\n"}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "resolv.conf")); got != "search example.org\nnameserver 192.0.2.1\n" {
		t.Fatalf("dnsPolicy Default: %q", got)
	}
	pod.Spec.DnsPolicy = "None"
	if _, err := PodFiles(dir, pod, "", DNSConfig{}); err == nil {
		t.Fatal("dnsPolicy None without nameservers was accepted")
	}
}
