package main

import (
	"errors"
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
		{"no mode", nil, "only --hollow mode is implemented yet"},
		{"zero nodes", []string{"--hollow=0"}, "only --hollow mode is implemented yet"},
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
	if _, err := parseFlags(nil, io.Discard); !errors.Is(err, errNotHollow) {
		t.Errorf("no --hollow: %v", err)
	}
}
