//go:build linux

package cni

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestBuildConflist(t *testing.T) {
	base := conflistParams{Name: "berth0", Bridge: "berth0", Subnet: netip.MustParsePrefix("10.89.0.0/24"), IPAMDir: "/var/lib/berth/network/ipam"}
	tests := []struct {
		name    string
		mod     func(*conflistParams)
		wantErr string
		check   func(t *testing.T, plugins []map[string]any)
	}{
		{name: "defaults", check: func(t *testing.T, p []map[string]any) {
			br := p[0]
			if br["type"] != "bridge" || br["bridge"] != "berth0" || br["isGateway"] != true || br["ipMasq"] != true || br["hairpinMode"] != true {
				t.Errorf("bridge = %v", br)
			}
			if _, ok := br["mtu"]; ok {
				t.Errorf("mtu set without MTU: %v", br)
			}
			ipam := br["ipam"].(map[string]any)
			r := ipam["ranges"].([]any)[0].([]any)[0].(map[string]any)
			if ipam["type"] != "host-local" || ipam["dataDir"] != base.IPAMDir || r["subnet"] != "10.89.0.0/24" || r["gateway"] != "10.89.0.1" {
				t.Errorf("ipam = %v", ipam)
			}
			if p[1]["type"] != "portmap" || p[1]["snat"] != true || p[1]["capabilities"].(map[string]any)["portMappings"] != true {
				t.Errorf("portmap = %v", p[1])
			}
			if p[2]["type"] != "firewall" || p[2]["backend"] != "iptables" {
				t.Errorf("firewall = %v", p[2])
			}
		}},
		{name: "mtu and unmasked subnet", mod: func(p *conflistParams) {
			p.MTU, p.Subnet = 1400, netip.MustParsePrefix("10.213.7.9/24")
		}, check: func(t *testing.T, p []map[string]any) {
			if p[0]["mtu"] != float64(1400) {
				t.Errorf("mtu = %v", p[0]["mtu"])
			}
			r := p[0]["ipam"].(map[string]any)["ranges"].([]any)[0].([]any)[0].(map[string]any)
			if r["subnet"] != "10.213.7.0/24" || r["gateway"] != "10.213.7.1" {
				t.Errorf("range = %v", r)
			}
		}},
		{name: "ipv6 subnet", mod: func(p *conflistParams) { p.Subnet = netip.MustParsePrefix("fd00::/64") }, wantErr: "not an IPv4 prefix"},
		{name: "gateway outside", mod: func(p *conflistParams) { p.Gateway = netip.MustParseAddr("10.1.0.1") }, wantErr: "outside subnet"},
		{name: "no bridge", mod: func(p *conflistParams) { p.Bridge = "" }, wantErr: "bridge name"},
		{name: "no ipam dir", mod: func(p *conflistParams) { p.IPAMDir = "" }, wantErr: "IPAM data directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			if tt.mod != nil {
				tt.mod(&p)
			}
			b, err := buildConflist(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("libcni rejects the conflist: %v\n%s", err, b)
			}
			if list.CNIVersion != cniVersion || list.Name != p.Name || len(list.Plugins) != 3 {
				t.Fatalf("list = %+v", list)
			}
			var raw struct {
				Plugins []map[string]any `json:"plugins"`
			}
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			tt.check(t, raw.Plugins)
		})
	}
}

func TestGatewayFor(t *testing.T) {
	for in, want := range map[string]string{"10.89.0.0/24": "10.89.0.1", "10.213.4.77/24": "10.213.4.1", "10.0.0.0/30": "10.0.0.1"} {
		if got := gatewayFor(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("gatewayFor(%s) = %v, want %s", in, got, want)
		}
	}
}

func TestMasqChainMatchesBridgePlugin(t *testing.T) {
	// Observed from the bridge plugin (containernetworking-plugins 1.1.1).
	if got := masqChain("berth-test-9e88", "berth-test-c-dc6352"); got != "CNI-dd5f32aed85f5f68bcbc4542" {
		t.Fatalf("masqChain = %s", got)
	}
	if got := masqComment("berth0", "x"); got != `name: "berth0" id: "x"` {
		t.Fatalf("masqComment = %s", got)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	empty := testDir(t)
	tests := []struct {
		name    string
		opts    Options
		wantErr []string
	}{
		{"no state dir", Options{}, []string{"StateDir is required"}},
		{"long bridge name", Options{StateDir: empty, BridgeName: "berth-test-toolong"}, []string{"not a valid interface name"}},
		{"ipv6 subnet", Options{StateDir: empty, Subnet: netip.MustParsePrefix("fd00::/64")}, []string{"IPv4 prefix"}},
		{"tiny subnet", Options{StateDir: empty, Subnet: netip.MustParsePrefix("10.213.0.0/31")}, []string{"between /8 and /30"}},
		{"negative mtu", Options{StateDir: empty, MTU: -1}, []string{"MTU must not be negative"}},
		{"plugins missing", Options{StateDir: empty, PluginDirs: []string{empty}},
			[]string{"bridge, host-local, portmap, firewall not found in " + empty, "apt-get install containernetworking-plugins"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("New(%+v) err = %v, want %q", tt.opts, err, want)
				}
			}
		})
	}
}
