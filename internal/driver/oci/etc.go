//go:build linux

package oci

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// etcFiles are written into the bundle directory and bind-mounted over the
// image's /etc files of the same name.
var etcFiles = []string{"resolv.conf", "hosts", "hostname"}

// etcInput is what writeEtcFiles needs.
type etcInput struct {
	// Hostname of the workload.
	Hostname string
	// IP is the workload's address; invalid when it has no network.
	IP netip.Addr
	// HostResolvConf is the host's resolv.conf.
	HostResolvConf string
	// DNS is the node's DNS server; when valid it is the only name
	// server, and Namespace's names come first in the search list.
	DNS       netip.Addr
	Namespace string
}

// writeEtcFiles writes resolv.conf, hosts and hostname into dir.
func writeEtcFiles(dir string, in etcInput) error {
	var resolv string
	if in.DNS.IsValid() {
		resolv = nodeResolvConf(in.DNS, in.Namespace)
	} else {
		var err error
		if resolv, err = resolvConf(in.HostResolvConf); err != nil {
			return err
		}
	}
	self := "127.0.1.1"
	if in.IP.IsValid() {
		self = in.IP.String()
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", self, in.Hostname)
	for name, content := range map[string]string{"resolv.conf": resolv, "hosts": hosts, "hostname": in.Hostname + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// resolvConf is the host's resolv.conf without loopback name servers
// (they do not answer inside the workload's network namespace); with
// none left it falls back to public resolvers, as Docker does.
func resolvConf(hostPath string) (string, error) {
	b, err := os.ReadFile(hostPath)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("read the host's resolv.conf: %w", err)
	}
	var out bytes.Buffer
	servers := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				continue
			}
			servers++
		}
		out.WriteString(line + "\n")
	}
	if servers == 0 {
		out.WriteString("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
	}
	return out.String(), nil
}

// nodeResolvConf points a workload at the node's DNS server, which
// answers berth's names and forwards the rest to the host's resolvers.
// "<app>" alone resolves in the workload's own namespace, and
// "<app>.<namespace>" in any.
func nodeResolvConf(dns netip.Addr, namespace string) string {
	search := "berth"
	if namespace != "" {
		search = namespace + ".berth berth"
	}
	return fmt.Sprintf("nameserver %s\nsearch %s\noptions ndots:2\n", dns, search)
}
