package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"a real node named after the host", []string{"--node-ip=10.0.0.1"}, ""},
		{"real node, bad data dir", []string{"--hollow=0", "--data-dir=x"}, "--data-dir"},
		{"hollow", []string{"--hollow=3", "--name=sim", "--server=a:1, b:2"}, ""},
		{"bad quantity", []string{"--hollow=1", "--hollow-memory=lots"}, "memory"},
		{"bad pod cidr", []string{"--hollow=1", "--hollow-pod-cidr=10.244.0.0"}, "--hollow-pod-cidr"},
		{"lease too short", []string{"--hollow=1", "--hollow-lease-interval=30s"}, "lease duration"},
		{"no servers", []string{"--hollow=1", "--server=,"}, "--server"},
		{"bad name", []string{"--hollow=1", "--name=Not_A_Name"}, "node name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q (flags %+v)", err, tc.wantErr, f)
			}
		})
	}
}

func TestParseFlagsFillsTheConfig(t *testing.T) {
	f, err := parseFlags([]string{"--hollow=5", "--name=sim", "--server=a:1,b:2", "--hollow-cpu=8",
		"--hollow-start-delay=2s", "--hollow-lease-interval=5s", "--hollow-pod-cidr=10.244.0.0/16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := f.hollow
	if c.Count != 5 || c.Prefix != "sim" || c.CPU != "8" || c.Memory != "16Gi" || c.Pods != "110" ||
		c.StartDelay != 2*time.Second || c.LeaseInterval != 5*time.Second || c.PodCIDR.String() != "10.244.0.0/16" {
		t.Errorf("config %+v", c)
	}
	if strings.Join(f.servers, ",") != "a:1,b:2" {
		t.Errorf("servers %v", f.servers)
	}
	// Without --hollow: one real node.
	f, err = parseFlags([]string{"--name=n1", "--server=a:1", "--data-dir=/var/lib/x", "--node-ip=192.168.5.5",
		"--cni-bin-dir=/opt/a,/opt/b", "--insecure-registry=127.0.0.1:5000", "--cluster-dns=10.96.0.10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n := f.node
	if !f.real || n.Name != "n1" || n.DataDir != "/var/lib/x" || n.NodeIP.String() != "192.168.5.5" ||
		strings.Join(n.CNIPluginDirs, ",") != "/opt/a,/opt/b" || strings.Join(n.InsecureRegistries, ",") != "127.0.0.1:5000" ||
		strings.Join(n.ClusterDNS, ",") != "10.96.0.10" {
		t.Errorf("real node config %+v", n)
	}
	for _, bad := range [][]string{
		{"--name=N_1"}, {"--data-dir=relative"}, {"--node-ip=nope"}, {"--cluster-dns=x"}, {"--server="},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
