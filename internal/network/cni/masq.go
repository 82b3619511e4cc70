//go:build linux

package cni

import (
	"crypto/sha512"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// masqChain is the per-workload nat chain the bridge plugin makes for
// ipMasq (its utils.FormatChainName: "CNI-" and 24 hex digits of
// sha512(network name + container id)).
func masqChain(netName, id string) string {
	return fmt.Sprintf("CNI-%x", sha512.Sum512([]byte(netName+id)))[:28]
}

// masqComment is the comment the bridge plugin puts on those rules.
func masqComment(netName, id string) string {
	return fmt.Sprintf("name: %q id: %q", netName, id)
}

// teardownIPMasq removes the bridge plugin's masquerade rules for a
// workload. The plugin learns the addresses to clean from the veth inside
// the namespace, so when the namespace is gone, or a sandbox runtime
// (gVisor) has taken the addresses off the veth, its DEL leaves the
// POSTROUTING rule and chain behind; berth knows the address from its
// record and removes them itself. Missing rules are fine.
func teardownIPMasq(netName, id string, ip netip.Addr) error {
	chain, comment := masqChain(netName, id), masqComment(netName, id)
	run := func(args ...string) (string, error) {
		out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if ip.IsValid() {
		if out, err := run("-D", "POSTROUTING", "-s", ip.String()+"/32", "-m", "comment", "--comment", comment, "-j", chain); err != nil && !missingRule(out) {
			return fmt.Errorf("remove masquerade rule of %s: %v: %s", id, err, strings.TrimSpace(out))
		}
	}
	if _, err := run("-n", "-L", chain); err != nil {
		return nil // no chain
	}
	if out, err := run("-F", chain); err != nil {
		return fmt.Errorf("flush chain %s of %s: %v: %s", chain, id, err, strings.TrimSpace(out))
	}
	if out, err := run("-X", chain); err != nil {
		return fmt.Errorf("delete chain %s of %s (still referenced?): %v: %s", chain, id, err, strings.TrimSpace(out))
	}
	return nil
}

// missingRule reports whether iptables output says the rule or chain to
// delete does not exist.
func missingRule(out string) bool {
	return strings.Contains(out, "does a matching rule exist") || strings.Contains(out, "No chain/target/match") ||
		strings.Contains(out, "Bad rule") || strings.Contains(out, "Couldn't load target") ||
		strings.Contains(out, "does not exist") // iptables-nft, for a chain the plugin already deleted
}
