package model

import "net/netip"

// DNSDomain is the zone node DNS answers for: <app>.<namespace>.berth.
const DNSDomain = "berth"

// AppDNSName is an app's DNS name, fully qualified:
// "<app>.<namespace>.berth.".
func AppDNSName(namespace, app string) string {
	return app + "." + namespace + "." + DNSDomain + "."
}

// Endpoints is what node DNS serves for one app (GET
// /v1/apps/{name}/endpoints, berth endpoints).
type Endpoints struct {
	Namespace string `json:"namespace"`
	App       string `json:"app"`
	// Name is the app's DNS name; its A and AAAA records are the
	// addresses of Addresses.
	Name string `json:"name"`
	// Addresses are the ready instances' addresses, sorted by instance.
	Addresses []EndpointAddress `json:"addresses"`
	// SRV are the service records, one per ready instance and port.
	SRV []SRVRecord `json:"srv"`
	// NotReady counts instances meant to run that DNS does not serve yet
	// (starting, unhealthy, on a down node).
	NotReady int `json:"notReady"`
}

// EndpointAddress is one ready instance's address.
type EndpointAddress struct {
	Instance string `json:"instance"`
	Node     string `json:"node"`
	// Name is the instance's own DNS name, "<instance>.<app>.<ns>.berth."
	// (empty when the instance ID is not a DNS label).
	Name string     `json:"name,omitempty"`
	IP   netip.Addr `json:"ip"`
	// NodeAddress says IP is the node's address, not the instance's own:
	// the workload has none (host network), so its SRV records carry host
	// ports.
	NodeAddress bool `json:"nodeAddress,omitempty"`
}

// SRVRecord is one SRV record: "_<port>._<proto>.<app>.<ns>.berth."
// pointing at an instance's name and port.
type SRVRecord struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Port     int    `json:"port"`
	Instance string `json:"instance"`
}
