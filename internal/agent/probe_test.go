package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

type fakeExec struct {
	code int
	out  string
	wait time.Duration
}

func (f fakeExec) ExecProbe(ctx context.Context, _ string, _ []string) (int, []byte, error) {
	select {
	case <-time.After(f.wait):
	case <-ctx.Done():
		return -1, nil, ctx.Err()
	}
	return f.code, []byte(f.out), nil
}

// TestProberHandlers runs real HTTP and TCP probes against servers on
// loopback, and exec probes through a fake runtime.
func TestProberHandlers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if r.Header.Get("X-Check") != "yes" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/slow":
			time.Sleep(1500 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready"))
		}
	}))
	defer srv.Close()
	ap := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
	ip, port := ap.Addr(), int(ap.Port())
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	c := &corev1.Container{Name: "app", Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	num := func(n int) *structpb.Value { return structpb.NewNumberValue(float64(n)) }
	httpProbe := func(path string, portV *structpb.Value) *corev1.Probe {
		return &corev1.Probe{TimeoutSeconds: 1, HttpGet: &corev1.HTTPGetAction{Path: path, Port: portV,
			HttpHeaders: []*corev1.HTTPHeader{{Name: "X-Check", Value: "yes"}}}}
	}
	tests := []struct {
		name    string
		probe   *corev1.Probe
		exec    Execer
		want    ProbeResult
		message string
	}{
		{"http ok via named port", httpProbe("/healthz", structpb.NewStringValue("http")), nil, ProbeSuccess, ""},
		{"http 503", httpProbe("/ready", num(port)), nil, ProbeFailure, "HTTP probe failed with statuscode: 503, body: not ready"},
		{"http timeout", httpProbe("/slow", num(port)), nil, ProbeFailure, "deadline exceeded"},
		{"http unknown port name", httpProbe("/", structpb.NewStringValue("metrics")), nil, ProbeFailure, `couldn't find port "metrics" in container "app"`},
		{"tcp open", &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: num(port)}}, nil, ProbeSuccess, ""},
		{"tcp closed", &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: num(closedPort)}}, nil, ProbeFailure, "connection refused"},
		{"exec ok", &corev1.Probe{Exec: &corev1.ExecAction{Command: []string{"true"}}}, fakeExec{}, ProbeSuccess, ""},
		{"exec fails", &corev1.Probe{Exec: &corev1.ExecAction{Command: []string{"check"}}}, fakeExec{code: 1, out: "bad\n"}, ProbeFailure, "bad"},
		{"exec timeout", &corev1.Probe{TimeoutSeconds: 1, Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}, fakeExec{wait: 3 * time.Second}, ProbeFailure, `command "sleep 5" timed out`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr := &Prober{Exec: tt.exec}
			got, msg := pr.Run(context.Background(), nil, c, "cid", ip, tt.probe)
			if got != tt.want || !strings.Contains(msg, tt.message) {
				t.Fatalf("got %v %q, want %v containing %q", got, msg, tt.want, tt.message)
			}
		})
	}
	if _, err := ResolvePort(structpb.NewStringValue(strconv.Itoa(port)), c); err != nil {
		t.Fatalf("numeric string port: %v", err)
	}
}

func TestProbeTimerThresholds(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &corev1.Probe{InitialDelaySeconds: 5, PeriodSeconds: 2, FailureThreshold: 3, SuccessThreshold: 2}
	pt := NewProbeTimer(p, t0, ProbeFailure)
	if due, next := pt.Due(t0.Add(4 * time.Second)); due || !next.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("due during the initial delay (next %v)", next)
	}
	now := t0.Add(5 * time.Second)
	if due, _ := pt.Due(now); !due {
		t.Fatal("not due after the initial delay")
	}
	steps := []struct {
		in, want ProbeResult
	}{
		{ProbeSuccess, ProbeFailure}, // 1 of 2 successes
		{ProbeUnknown, ProbeFailure}, // changes nothing
		{ProbeSuccess, ProbeSuccess}, // 2 of 2
		{ProbeFailure, ProbeSuccess}, // 1 of 3 failures
		{ProbeFailure, ProbeSuccess}, // 2 of 3
		{ProbeSuccess, ProbeSuccess}, // streak broken
		{ProbeFailure, ProbeSuccess},
		{ProbeFailure, ProbeSuccess},
		{ProbeFailure, ProbeFailure}, // 3 in a row
	}
	for i, s := range steps {
		if got := pt.Observe(now, s.in); got != s.want {
			t.Fatalf("step %d: observed %v, result %v, want %v", i, s.in, got, s.want)
		}
		if due, next := pt.Due(now.Add(time.Second)); due || !next.Equal(now.Add(2*time.Second)) {
			t.Fatalf("step %d: next probe at %v, want a period later", i, next)
		}
		now = now.Add(2 * time.Second)
	}
}
