package model

import "testing"

func TestNodeSubnetHalves(t *testing.T) {
	for _, c := range []struct{ in, native, ngw, docker, dgw string }{
		{"10.90.3.0/24", "10.90.3.0/25", "10.90.3.1", "10.90.3.128/25", "10.90.3.129"},
		{"10.90.0.0/16", "10.90.0.0/17", "10.90.0.1", "10.90.128.0/17", "10.90.128.1"},
		{"10.90.3.8/29", "10.90.3.8/30", "10.90.3.9", "10.90.3.12/30", "10.90.3.13"},
	} {
		n, ngw, err := NativeSubnet(c.in)
		if err != nil || n.String() != c.native || ngw.String() != c.ngw {
			t.Errorf("NativeSubnet(%s) = %s %s %v", c.in, n, ngw, err)
		}
		d, dgw, err := DockerSubnet(c.in)
		if err != nil || d.String() != c.docker || dgw.String() != c.dgw {
			t.Errorf("DockerSubnet(%s) = %s %s %v", c.in, d, dgw, err)
		}
	}
	for _, bad := range []string{"", "10.90.3.1/24", "10.90.3.0/30", "fd00::/64", "nope"} {
		if _, _, err := NativeSubnet(bad); err == nil {
			t.Errorf("NativeSubnet(%q): no error", bad)
		}
	}
	if SubnetKey("10.90.3.0/24") != "/subnets/10.90.3.0-24" {
		t.Errorf("SubnetKey = %s", SubnetKey("10.90.3.0/24"))
	}
}
