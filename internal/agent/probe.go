package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// Probe results, as the kubelet's prober names them.
type ProbeResult int

const (
	ProbeUnknown ProbeResult = iota
	ProbeSuccess
	ProbeFailure
)

func (r ProbeResult) String() string {
	return [...]string{"Unknown", "Success", "Failure"}[r]
}

// Execer runs a command in a container for an exec probe: its exit code, or
// an error when it could not run at all.
type Execer interface {
	ExecProbe(ctx context.Context, containerID string, cmd []string) (exitCode int, output []byte, err error)
}

// Prober runs one probe of a container once (exec, httpGet or tcpSocket; gRPC
// probes report Unknown). timeoutSeconds bounds each attempt.
type Prober struct {
	Exec   Execer
	Client *http.Client // nil: a client that does not follow redirects to other hosts and keeps no connections
}

// Run probes container c of pod, whose IP is podIP, with p. The message says
// why a probe failed, in the kubelet's words where it has them.
func (pr *Prober) Run(ctx context.Context, pod *corev1.Pod, c *corev1.Container, containerID string, podIP netip.Addr, p *corev1.Probe) (ProbeResult, string) {
	timeout := time.Duration(max(p.GetTimeoutSeconds(), 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.GetExec() != nil:
		if pr.Exec == nil {
			return ProbeUnknown, "exec probes are not supported here"
		}
		code, out, err := pr.Exec.ExecProbe(ctx, containerID, p.GetExec().GetCommand())
		switch {
		case ctx.Err() != nil:
			return ProbeFailure, fmt.Sprintf("command %q timed out", strings.Join(p.GetExec().GetCommand(), " "))
		case err != nil:
			return ProbeUnknown, err.Error()
		case code != 0:
			return ProbeFailure, strings.TrimSpace(string(out))
		}
		return ProbeSuccess, ""
	case p.GetHttpGet() != nil:
		return pr.http(ctx, c, podIP, p.GetHttpGet())
	case p.GetTcpSocket() != nil:
		t := p.GetTcpSocket()
		port, err := ResolvePort(t.GetPort(), c)
		if err != nil {
			return ProbeFailure, err.Error()
		}
		host := t.GetHost()
		if host == "" {
			host = podIP.String()
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return ProbeFailure, fmt.Sprintf("dial tcp %s: %v", addr, errText(err))
		}
		conn.Close()
		return ProbeSuccess, ""
	}
	return ProbeUnknown, "probe has no handler this agent supports"
}

func (pr *Prober) http(ctx context.Context, c *corev1.Container, podIP netip.Addr, h *corev1.HTTPGetAction) (ProbeResult, string) {
	port, err := ResolvePort(h.GetPort(), c)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	host := h.GetHost()
	if host == "" {
		host = podIP.String()
	}
	scheme := strings.ToLower(h.GetScheme())
	if scheme == "" {
		scheme = "http"
	}
	path := h.GetPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	full := u.String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.GetHttpHeaders() {
		if strings.EqualFold(hd.GetName(), "host") {
			req.Host = hd.GetValue()
			continue
		}
		req.Header.Set(hd.GetName(), hd.GetValue())
	}
	client := pr.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return ProbeFailure, fmt.Sprintf("Get %q: %v", full, errText(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return ProbeSuccess, ""
	}
	return ProbeFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode) + trailing(body)
}

func trailing(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	return ", body: " + strings.TrimSpace(string(body))
}

func errText(err error) string {
	if ue, ok := err.(*url.Error); ok {
		err = ue.Err
	}
	return err.Error()
}

// ResolvePort is a probe's or Service's port against container c: a number, or
// the name of one of c's ports.
func ResolvePort(v *structpb.Value, c *corev1.Container) (int, error) {
	switch x := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if n := int(x.NumberValue); n > 0 && n < 65536 {
			return n, nil
		}
	case *structpb.Value_StringValue:
		if n, err := strconv.Atoi(x.StringValue); err == nil && n > 0 && n < 65536 {
			return n, nil
		}
		for _, p := range c.GetPorts() {
			if p.GetName() == x.StringValue {
				return int(p.GetContainerPort()), nil
			}
		}
		return 0, fmt.Errorf("couldn't find port %q in container %q", x.StringValue, c.GetName())
	}
	return 0, fmt.Errorf("invalid port %v", v)
}

// ProbeTimer is the schedule and thresholds of one probe of one container, as
// the kubelet's probe worker keeps them. It is a pure state machine: the
// caller runs the probe when Due says so and feeds the result to Observe.
type ProbeTimer struct {
	probe   *corev1.Probe
	started time.Time // when the container started
	next    time.Time
	result  ProbeResult // what the container counts as
	last    ProbeResult // the last run's result
	streak  int         // consecutive runs with that result
}

// NewProbeTimer starts the schedule of p for a container that started at
// started: the first probe is due after initialDelaySeconds. Until then the
// result is the initial one (Failure for readiness, Success for liveness: the
// caller passes it).
func NewProbeTimer(p *corev1.Probe, started time.Time, initial ProbeResult) *ProbeTimer {
	return &ProbeTimer{probe: p, started: started, result: initial,
		next: started.Add(time.Duration(p.GetInitialDelaySeconds()) * time.Second)}
}

// Due reports whether a probe should run at now, and when the next one is due.
func (t *ProbeTimer) Due(now time.Time) (bool, time.Time) {
	return !now.Before(t.next), t.next
}

// Observe records one probe run at now and returns the result the container
// has now: a result only turns after successThreshold (default 1) consecutive
// successes or failureThreshold (default 3) consecutive failures; Unknown
// results change nothing.
func (t *ProbeTimer) Observe(now time.Time, r ProbeResult) ProbeResult {
	period := time.Duration(t.probe.GetPeriodSeconds()) * time.Second
	if period <= 0 {
		period = 10 * time.Second
	}
	t.next = now.Add(period)
	if r == ProbeUnknown {
		return t.result
	}
	if r == t.last {
		t.streak++
	} else {
		t.streak = 1
	}
	t.last = r
	need := int(t.probe.GetFailureThreshold())
	if need <= 0 {
		need = 3
	}
	if r == ProbeSuccess {
		need = max(int(t.probe.GetSuccessThreshold()), 1)
	}
	if t.streak >= need {
		t.result = r
	}
	return t.result
}

// Result is the container's current result for this probe.
func (t *ProbeTimer) Result() ProbeResult { return t.result }
