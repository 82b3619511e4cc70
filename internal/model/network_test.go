package model

import "testing"

func TestNetworkParseAndValidate(t *testing.T) {
	base := "name: api\nimage: nginx\n"
	cases := []specErrorCase{
		{"network: Web_1", "network", "lowercase"},
		{"allowFrom: [{}]", "allowFrom[0]", "network or an app"},
		{"allowFrom: [{network: web, app: x}]", "allowFrom[0]", "not both"},
		{"allowFrom: [{network: web, namespace: x}]", "allowFrom[0].namespace", "only allowed with app"},
		{"allowFrom: [{network: web}, {network: \"-x\"}]", "allowFrom[1].network", "lowercase"},
		{"allowFrom: [{app: API}]", "allowFrom[0].app", "lowercase"},
		{"allowFrom: [{app: a, namespace: \"N S\"}]", "allowFrom[0].namespace", "lowercase"},
		{"allowFrom: [{net: web}]", "allowFrom[0].net", "unknown field"},
		{"allowFrom: {network: web}", "allowFrom", "must be a list"},
		{"network: 5", "network", "must be a string"},
	}
	expectSpecErrors(t, base, cases)
	for _, ok := range []string{"network: web", "allowFrom: [{network: web}, {app: db, namespace: data}, {app: cli}]"} {
		spec, err := ParseSpec([]byte(base + ok))
		if err != nil {
			t.Fatalf("%s: %v", ok, err)
		}
		spec.Normalize()
		if verr := spec.Validate(); verr != nil {
			t.Errorf("%s: %v", ok, verr)
		}
	}
}

func TestNetworkTemplate(t *testing.T) {
	parse := func(y string) AppSpec {
		t.Helper()
		s, err := ParseSpec([]byte("name: api\nnamespace: shop\nimage: nginx\n" + y))
		if err != nil {
			t.Fatal(err)
		}
		s.Normalize()
		return s
	}
	plain := parse("")
	if got := plain.EffectiveNetwork(); got != "shop" {
		t.Errorf("default network %q, want the namespace shop", got)
	}
	if TemplateHash(parse("network: shop")) != TemplateHash(plain) {
		t.Error("spelling out the default network made a new template")
	}
	if TemplateHash(parse("network: web")) == TemplateHash(plain) {
		t.Error("changing the network kept the template")
	}
	granted := parse("allowFrom: [{network: web}]")
	if TemplateHash(granted) != TemplateHash(plain) {
		t.Error("allowFrom changed the template")
	}
	if got := plain.WithTemplate(granted); got.AllowFrom != nil {
		t.Errorf("WithTemplate took allowFrom from the template: %v", got.AllowFrom)
	}
	if got := granted.WithTemplate(plain); len(got.AllowFrom) != 1 {
		t.Errorf("WithTemplate lost the app's allowFrom: %v", got.AllowFrom)
	}
}

func TestGrants(t *testing.T) {
	s := AppSpec{Name: "db", Namespace: "data", AllowFrom: []NetworkPeer{{Network: "web"}, {App: "etl"}, {App: "cli", Namespace: "ops"}}}
	cases := []struct {
		net, ns, app string
		want         bool
	}{
		{"web", "any", "x", true},
		{"other", "data", "etl", true},
		{"other", "shop", "etl", false},
		{"other", "ops", "cli", true},
		{"other", "data", "cli", false},
		{"other", "data", "x", false},
	}
	for _, c := range cases {
		if got := s.Grants(c.net, c.ns, c.app); got != c.want {
			t.Errorf("Grants(%s, %s, %s) = %v, want %v", c.net, c.ns, c.app, got, c.want)
		}
	}
}
