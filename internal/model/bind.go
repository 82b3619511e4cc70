package model

import (
	"fmt"
	"strconv"
	"strings"
)

// Binding makes another app's DNS name and port known to this app as
// environment variables (see docs/dns.md): with prefix P (default: the
// bound app's name in upper case, '-' as '_'),
//
//	P_HOST=<app>.<namespace>.berth
//	P_PORT=<the bound app's containerPort of Port>
//	P_ADDR=<P_HOST>:<P_PORT>
//
// The port number is looked up when an instance starts; an instance whose
// bound app or port does not exist then fails to start, saying which,
// and is retried.
type Binding struct {
	// App is the bound app's name.
	App string `json:"app"`
	// Namespace is the bound app's namespace; empty means this app's.
	Namespace string `json:"namespace,omitempty"`
	// Port is the name of one of the bound app's ports.
	Port string `json:"port"`
	// Env is the variables' prefix; empty derives it from App.
	Env string `json:"env,omitempty"`
}

// EnvPrefix is the prefix of the binding's variables.
func (b Binding) EnvPrefix() string {
	if b.Env != "" {
		return b.Env
	}
	return strings.ToUpper(strings.ReplaceAll(b.App, "-", "_"))
}

// BindEnv are the variables of binding b of an app in namespace ns, the
// bound port being containerPort.
func BindEnv(b Binding, ns string, containerPort int) map[string]string {
	if b.Namespace != "" {
		ns = b.Namespace
	}
	host := b.App + "." + ns + "." + DNSDomain
	port := strconv.Itoa(containerPort)
	p := b.EnvPrefix()
	return map[string]string{p + "_HOST": host, p + "_PORT": port, p + "_ADDR": host + ":" + port}
}

// bind checks spec.bind: names, unique prefixes, no clash with env.
func (v *validator) bind(s *AppSpec) {
	used := map[string]int{}
	for i, b := range s.Bind {
		f := fmt.Sprintf("bind[%d]", i)
		v.dns(f+".app", b.App, 63, true)
		v.dns(f+".namespace", b.Namespace, 63, false)
		v.dns(f+".port", b.Port, 15, true)
		if b.App == "" {
			continue
		}
		p := b.EnvPrefix()
		if !envKey.MatchString(p) {
			v.add(f+".env", "prefix must match [A-Za-z_][A-Za-z0-9_]*, got %q", p)
			continue
		}
		if j, dup := used[p]; dup {
			v.add(f+".env", "prefix %s is already used by bind[%d]; set env to tell them apart", p, j)
			continue
		}
		used[p] = i
		for _, k := range sortedStrings(BindEnv(b, s.Namespace, 0)) {
			if _, set := s.Env[k]; set {
				v.add(f, "sets %s, which env sets too; remove one or set bind[%d].env", k, i)
			}
		}
	}
}
