package images

import (
	"net/http"
	"strings"
	"testing"
)

func TestRegistryTransportPolicy(t *testing.T) {
	tr, err := newRegistryTransport([]string{"reg.local:5000", "plainhost", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host     string
		insecure bool
		loopback bool
	}{
		{"reg.local:5000", true, false},
		{"reg.local:5001", false, false},
		{"plainhost:8080", true, false},
		{"10.1.2.3:5000", true, false},
		{"192.168.1.2:5000", false, false}, // RFC 1918, but not listed
		{"127.0.0.1:5000", false, true},
		{"localhost:5000", false, true},
		{"[::1]:5000", false, true},
		{"registry.example.com", false, false},
	}
	for _, tt := range tests {
		if got := tr.insecure(tt.host); got != tt.insecure {
			t.Errorf("insecure(%s) = %v, want %v", tt.host, got, tt.insecure)
		}
		if got := loopback(tt.host); got != tt.loopback {
			t.Errorf("loopback(%s) = %v, want %v", tt.host, got, tt.loopback)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://192.168.1.2:5000/v2/", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("plain HTTP to an unlisted registry: %v", err)
	}
	if _, err := newRegistryTransport([]string{"host/path"}); err == nil {
		t.Error("insecure entry with a path accepted")
	}
}
