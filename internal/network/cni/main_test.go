//go:build linux

package cni

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// cniChains are the chains the portmap and firewall plugins share between
// all CNI networks on a host; they outlive CNI DEL by design.
var cniChains = map[string][]string{
	"filter": {"CNI-FORWARD", "CNI-ADMIN"},
	"nat":    {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"},
}

// TestMain removes the plugins' shared chains after the tests if they did
// not exist before and nothing else uses them by then, so the tests leave
// the host's iptables as they found it. Chains that existed before (a
// real berth, podman, containerd on this host) are never touched.
func TestMain(m *testing.M) {
	existed := sharedChainsExist()
	code := m.Run()
	if !existed && os.Geteuid() == 0 {
		removeIdleSharedChains()
	}
	os.Exit(code)
}

func iptablesSave(table string) []string {
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		return nil
	}
	return strings.Split(string(out), "\n")
}

func sharedChainsExist() bool {
	for table, chains := range cniChains {
		for _, line := range iptablesSave(table) {
			for _, c := range chains {
				if line == ":"+c+" - [0:0]" || strings.HasPrefix(line, ":"+c+" ") {
					return true
				}
			}
		}
	}
	return false
}

// removeIdleSharedChains deletes the shared chains only if no workload
// rule is in them: CNI-HOSTPORT-DNAT empty, CNI-FORWARD holding just its
// jump to CNI-ADMIN, CNI-ADMIN empty.
func removeIdleSharedChains() {
	rules := map[string][]string{} // chain → its rules
	var jumps [][2]string          // table, rule jumping into a shared chain
	for table, chains := range cniChains {
		for _, line := range iptablesSave(table) {
			if !strings.HasPrefix(line, "-A ") {
				continue
			}
			chain, _, _ := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
			rules[chain] = append(rules[chain], line)
			for _, c := range chains {
				if strings.HasSuffix(line, " -j "+c) && !strings.HasPrefix(chain, "CNI-") {
					jumps = append(jumps, [2]string{table, line})
				}
			}
		}
	}
	if len(rules["CNI-HOSTPORT-DNAT"]) > 0 || len(rules["CNI-ADMIN"]) > 0 || len(rules["CNI-FORWARD"]) > 1 {
		return
	}
	for _, j := range jumps {
		args := append([]string{"-t", j[0], "-D"}, splitRule(strings.TrimPrefix(j[1], "-A "))...)
		exec.Command("iptables", args...).Run()
	}
	for table, chains := range cniChains {
		for _, c := range chains {
			exec.Command("iptables", "-t", table, "-F", c).Run()
		}
		for _, c := range chains {
			exec.Command("iptables", "-t", table, "-X", c).Run()
		}
	}
}
