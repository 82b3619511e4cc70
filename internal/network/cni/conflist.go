//go:build linux

package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// cniVersion is the CNI spec version of the generated conflist. 1.0.0 is
// the newest version Debian's containernetworking-plugins (1.1.x) speak.
const cniVersion = "1.0.0"

// pluginTypes are the plugin binaries the conflist uses, in chain order.
var pluginTypes = []string{"bridge", "host-local", "portmap", "firewall"}

// conflistParams is everything the node conflist depends on.
type conflistParams struct {
	// Name is the CNI network name; berth uses the bridge name.
	Name    string
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	MTU     int
	// IPAMDir is host-local's dataDir (leases live in IPAMDir/<Name>).
	IPAMDir string
}

// gatewayFor returns the first host address of subnet, which the bridge
// takes as the workloads' gateway.
func gatewayFor(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

// buildConflist renders the node's CNI network configuration list:
// bridge (gateway, masquerade, hairpin) with host-local IPAM, portmap for
// published ports (with SNAT, so 127.0.0.1:<hostPort> works), and the
// firewall plugin so that a host whose FORWARD policy is DROP (Docker sets
// that) still forwards the workloads' traffic.
func buildConflist(p conflistParams) ([]byte, error) {
	if p.Name == "" || p.Bridge == "" {
		return nil, fmt.Errorf("cni: conflist needs a network and a bridge name")
	}
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("cni: subnet %v is not an IPv4 prefix", p.Subnet)
	}
	if p.IPAMDir == "" {
		return nil, fmt.Errorf("cni: conflist needs an IPAM data directory")
	}
	gw := p.Gateway
	if !gw.IsValid() {
		gw = gatewayFor(p.Subnet)
	}
	if !p.Subnet.Contains(gw) {
		return nil, fmt.Errorf("cni: gateway %v is outside subnet %v", gw, p.Subnet)
	}
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      p.Bridge,
		"isGateway":   true,
		"ipMasq":      true,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": p.IPAMDir,
			"ranges": [][]map[string]any{{{
				"subnet":  p.Subnet.Masked().String(),
				"gateway": gw.String(),
			}}},
			"routes": []map[string]any{{"dst": "0.0.0.0/0"}},
		},
	}
	if p.MTU > 0 {
		bridge["mtu"] = p.MTU
	}
	list := map[string]any{
		"cniVersion": cniVersion,
		"name":       p.Name,
		"plugins": []any{
			bridge,
			map[string]any{
				"type":         "portmap",
				"snat":         true,
				"capabilities": map[string]bool{"portMappings": true},
			},
			map[string]any{
				"type":    "firewall",
				"backend": "iptables",
			},
		},
	}
	return json.MarshalIndent(list, "", "  ")
}

// portMapping is one entry of CNI's portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}
