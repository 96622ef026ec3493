package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "github.com/rafter-dev/rafter/gen/rafter/core/v1"
)

// DNSConfig is what the agent puts into a pod's /etc/resolv.conf for
// dnsPolicy ClusterFirst: the cluster DNS servers and domain.
type DNSConfig struct {
	Servers       []string // cluster DNS Service IPs; empty: fall back to the host's resolv.conf
	ClusterDomain string   // default "cluster.local"
	HostResolv    string   // the host's resolv.conf, for dnsPolicy Default and the fallback
}

// PodFiles writes a pod's /etc/hostname, /etc/hosts and /etc/resolv.conf into
// dir (the kubelet's etc-hosts and resolv.conf) and returns the bind mounts for
// its containers. The hostname is spec.hostname or the pod name; with a
// subdomain the hosts file names the pod's FQDN too.
func PodFiles(dir string, pod *corev1.Pod, podIP string, dns DNSConfig) ([]Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	md, spec := pod.GetMetadata(), pod.GetSpec()
	hostname := spec.GetHostname()
	if hostname == "" {
		hostname = md.GetName()
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	domain := dns.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	var hosts strings.Builder
	hosts.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	hosts.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if podIP != "" {
		if sub := spec.GetSubdomain(); sub != "" {
			fmt.Fprintf(&hosts, "%s\t%s.%s.%s.svc.%s\t%s\n", podIP, hostname, sub, md.GetNamespace(), domain, hostname)
		} else {
			fmt.Fprintf(&hosts, "%s\t%s\n", podIP, hostname)
		}
	}
	for _, ha := range spec.GetHostAliases() {
		fmt.Fprintf(&hosts, "%s\t%s\n", ha.GetIp(), strings.Join(ha.GetHostnames(), "\t"))
	}
	resolv, err := resolvConf(pod, dns, domain)
	if err != nil {
		return nil, err
	}
	files := map[string]string{"hostname": hostname + "\n", "hosts": hosts.String(), "resolv.conf": resolv}
	var mounts []Mount
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(files[name]), 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return nil, err
		}
		mounts = append(mounts, Mount{Source: p, Destination: "/etc/" + name})
	}
	return mounts, nil
}

func resolvConf(pod *corev1.Pod, dns DNSConfig, domain string) (string, error) {
	ns := pod.GetMetadata().GetNamespace()
	policy := pod.GetSpec().GetDnsPolicy()
	if policy == "" {
		policy = "ClusterFirst"
	}
	host := dns.HostResolv
	var servers, search []string
	var options []string
	switch {
	case policy == "None":
	case policy == "Default" || len(dns.Servers) == 0:
		for _, line := range strings.Split(host, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				servers = append(servers, f[1])
			case "search":
				search = append(search, f[1:]...)
			case "options":
				options = append(options, f[1:]...)
			}
		}
	default: // ClusterFirst, ClusterFirstWithHostNet
		servers = dns.Servers
		search = []string{ns + ".svc." + domain, "svc." + domain, domain}
		options = []string{"ndots:5"}
	}
	if c := pod.GetSpec().GetDnsConfig(); c != nil {
		servers = append(servers, c.GetNameservers()...)
		search = append(search, c.GetSearches()...)
		for _, o := range c.GetOptions() {
			if o.Value != nil {
				options = append(options, o.GetName()+":"+o.GetValue())
			} else {
				options = append(options, o.GetName())
			}
		}
	}
	if policy == "None" && len(servers) == 0 {
		return "", &ConfigError{Message: "dnsPolicy None needs dnsConfig.nameservers"}
	}
	var b strings.Builder
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String(), nil
}
