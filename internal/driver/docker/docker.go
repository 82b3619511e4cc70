// Package docker is the driver that runs instances as Docker containers
// through the official Engine API client (no shelling out). Containers are
// named berth-<instance> and labelled so the agent can reattach to them.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	dockerclient "github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/netns"
	berthimage "github.com/berth-dev/berth/internal/image"
)

// Options configure the driver.
type Options struct {
	// Node is set as the berth.node label; List only returns this node's
	// containers when it is set.
	Node string
	// Host overrides DOCKER_HOST.
	Host string
	// DNS are the name servers containers use (HostConfig.DNS), e.g.
	// berth's node DNS on the docker0 gateway; empty keeps the engine's
	// default (the host's resolv.conf). With DNS set, containers search
	// "<namespace>.berth" and "berth".
	DNS []netip.Addr
	// Network, when set, is the berth-managed Docker network containers
	// are attached to (created at the first start, see network.go);
	// nil keeps Docker's default bridge.
	Network *Network
	// NetworkFrom, when set instead of Network, is asked for the network
	// at the first start (an agent learns its node subnet from the
	// server after it starts); it may block, and a nil network keeps
	// Docker's default bridge. An error fails that start only.
	NetworkFrom func(ctx context.Context) (*Network, error)
}

// Driver implements driver.Driver on the Docker Engine.
type Driver struct {
	c    *dockerclient.Client
	node string
	dns  []netip.Addr
	// createMu serializes ensureNetwork; netMu guards net, netFrom and
	// netReady (the network is known to exist as wanted).
	createMu sync.Mutex
	netMu    sync.Mutex
	net      *Network
	netFrom  func(ctx context.Context) (*Network, error)
	netReady bool
}

// defaultCaps is Docker's default capability set; everything else is
// dropped (the spec cannot ask for more yet).
var defaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
	"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// New connects to the engine from the environment (DOCKER_HOST ...),
// negotiating the API version so older engines work.
func New(o Options) (*Driver, error) {
	opts := []dockerclient.Opt{dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation()}
	if o.Host != "" {
		opts = append(opts, dockerclient.WithHost(o.Host))
	}
	c, err := dockerclient.NewClientWithOpts(opts...)
	if err != nil {
		return nil, err
	}
	if o.Network != nil && (!o.Network.Subnet.Addr().Is4() || !o.Network.Subnet.Contains(o.Network.Gateway)) {
		return nil, fmt.Errorf("docker network %s: subnet %s must be IPv4 and hold gateway %s", o.Network.name(), o.Network.Subnet, o.Network.Gateway)
	}
	return &Driver{c: c, node: o.Node, dns: o.DNS, net: o.Network, netFrom: o.NetworkFrom}, nil
}

// Close releases the client.
func (d *Driver) Close() error { return d.c.Close() }

// Name implements driver.Driver.
func (d *Driver) Name() string { return "docker" }

// Available implements driver.Driver.
func (d *Driver) Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.c.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine unreachable: %w", err)
	}
	return nil
}

// ContainerName is the name of an instance's container.
func ContainerName(instanceID string) string { return "berth-" + instanceID }

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, t driver.Task) (string, error) {
	if err := d.ensureImage(ctx, t.Image, t.RegistryAuth); err != nil {
		return "", err
	}
	cfg, hc, err := d.containerConfig(t)
	if err != nil {
		return "", err
	}
	created, err := d.create(ctx, cfg, hc, ContainerName(t.InstanceID), t.Namespace)
	if err != nil {
		return "", fmt.Errorf("create container: %s", engineMessage(err))
	}
	if err := d.c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		_ = d.c.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
		return "", fmt.Errorf("start container: %s", engineMessage(err))
	}
	return created.ID, nil
}

// create creates the container on the berth network (made first if
// needed) or Docker's default bridge. A leftover with the same name (a
// crash between create and the status write) is ours: it is replaced.
func (d *Driver) create(ctx context.Context, cfg *container.Config, hc *container.HostConfig, name, namespace string) (container.CreateResponse, error) {
	var nc *network.NetworkingConfig
	n, err := d.ensureNetwork(ctx)
	if err != nil {
		return container.CreateResponse{}, err
	}
	if n != nil {
		hc.NetworkMode = container.NetworkMode(n.name())
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{n.name(): {}}}
		if len(n.DNS) > 0 {
			setDNS(hc, n.DNS, namespace)
		}
	}
	created, err := d.c.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if errdefs.IsConflict(err) {
		_ = d.c.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
		created, err = d.c.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	}
	if n != nil && errdefs.IsNotFound(err) {
		// The network was removed under us: make it again, once.
		d.networkGone()
		if _, err := d.ensureNetwork(ctx); err != nil {
			return container.CreateResponse{}, err
		}
		created, err = d.c.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	}
	return created, err
}

// ensureImage pulls the image if the engine does not have it, with auth
// when given.
func (d *Driver) ensureImage(ctx context.Context, ref string, auth *driver.RegistryAuth) error {
	if _, err := d.c.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	opts, err := pullOptions(ref, auth)
	if err != nil {
		return err
	}
	rc, err := d.c.ImagePull(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("pull %s: %s", ref, engineMessage(err))
	}
	defer rc.Close()
	if err := pullError(rc); err != nil {
		return fmt.Errorf("pull %s: %s", ref, err)
	}
	return nil
}

func (d *Driver) containerConfig(t driver.Task) (*container.Config, *container.HostConfig, error) {
	labels := driver.WorkloadLabels(t, d.node)
	env := make([]string, 0, len(t.Env))
	for k, v := range t.Env {
		env = append(env, k+"="+v)
	}
	cfg := &container.Config{Image: t.Image, Env: env, Labels: labels, Hostname: hostname(t.InstanceID),
		ExposedPorts: nat.PortSet{}}
	if len(t.Command) > 0 {
		cfg.Entrypoint = t.Command
	}
	if len(t.Args) > 0 {
		cfg.Cmd = t.Args
	}
	hc := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		PortBindings:  nat.PortMap{},
		CapDrop:       []string{"ALL"},
		CapAdd:        defaultCaps,
		SecurityOpt:   []string{"no-new-privileges:true"},
		Resources:     container.Resources{NanoCPUs: t.CPUMilli * 1_000_000, Memory: t.MemoryBytes},
		LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
	if len(d.dns) > 0 {
		setDNS(hc, d.dns, t.Namespace)
	}
	if t.MemoryBytes > 0 {
		hc.MemorySwap = t.MemoryBytes // no swap beyond the limit
	}
	for _, p := range t.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		port, err := nat.NewPort(proto, strconv.Itoa(p.ContainerPort))
		if err != nil {
			return nil, nil, fmt.Errorf("port %s: %w", p.Name, err)
		}
		cfg.ExposedPorts[port] = struct{}{}
		hp := ""
		if p.HostPort > 0 {
			hp = strconv.Itoa(p.HostPort)
		}
		hc.PortBindings[port] = append(hc.PortBindings[port], nat.PortBinding{HostIP: "0.0.0.0", HostPort: hp})
	}
	return cfg, hc, nil
}

// setDNS makes servers the container's name servers, searching the
// namespace's and berth's zones.
func setDNS(hc *container.HostConfig, servers []netip.Addr, namespace string) {
	hc.DNS = hc.DNS[:0]
	for _, a := range servers {
		hc.DNS = append(hc.DNS, a.String())
	}
	hc.DNSSearch = []string{namespace + ".berth", "berth"}
}

// hostname is the instance ID cut to the 63 characters a hostname allows.
func hostname(id string) string {
	if len(id) > 63 {
		return id[:63]
	}
	return id
}

// Restart implements driver.Driver.
func (d *Driver) Restart(ctx context.Context, id string) error {
	if err := d.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		if errdefs.IsNotFound(err) {
			return driver.ErrNotFound
		}
		return fmt.Errorf("start container: %s", engineMessage(err))
	}
	return nil
}

// Stop implements driver.Driver: SIGTERM, then SIGKILL after grace.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := int((grace + time.Second - 1) / time.Second)
	err := d.c.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs})
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		return driver.ErrNotFound
	}
	return fmt.Errorf("stop container: %s", engineMessage(err))
}

// Remove implements driver.Driver.
func (d *Driver) Remove(ctx context.Context, id string) error {
	err := d.c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("remove container: %s", engineMessage(err))
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	c, err := d.c.ContainerInspect(ctx, id)
	if errdefs.IsNotFound(err) {
		return driver.Status{}, driver.ErrNotFound
	}
	if err != nil {
		return driver.Status{}, fmt.Errorf("inspect container: %s", engineMessage(err))
	}
	st := driver.Status{ID: c.ID, Labels: c.Config.Labels, InstanceID: c.Config.Labels[driver.LabelInstance]}
	if c.State != nil {
		st.State = mapState(c.State.Status)
		st.ExitCode = c.State.ExitCode
		st.Error = c.State.Error
		if c.State.OOMKilled {
			st.Error = strings.TrimSpace("out of memory (OOM killed) " + st.Error)
		}
		st.StartedAt = parseTime(c.State.StartedAt)
		st.FinishedAt = parseTime(c.State.FinishedAt)
	}
	if c.NetworkSettings != nil {
		st.IP = d.containerIP(c.NetworkSettings.Networks)
	}
	return st, nil
}

// containerIP is the container's address: its IPv4 address on the berth
// network, else the first IPv4 address of its networks by name, else the
// first IPv6 one; invalid when it has none (network mode host or none, or
// not running).
func (d *Driver) containerIP(nets map[string]*network.EndpointSettings) netip.Addr {
	if n := d.network(); n != nil {
		if ep := nets[n.name()]; ep != nil {
			if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
				return a
			}
		}
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	var v6 netip.Addr
	for _, n := range names {
		ep := nets[n]
		if ep == nil {
			continue
		}
		if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
			return a
		}
		if a, err := netip.ParseAddr(ep.GlobalIPv6Address); err == nil && !v6.IsValid() {
			v6 = a
		}
	}
	return v6
}

func mapState(s string) string {
	switch s {
	case "running", "paused", "restarting":
		return driver.StateRunning
	case "created":
		return driver.StateCreated
	}
	return driver.StateExited
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}

// List implements driver.Driver.
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	f := filters.NewArgs(filters.Arg("label", driver.LabelManaged+"=true"))
	if d.node != "" {
		f.Add("label", driver.LabelNode+"="+d.node)
	}
	list, err := d.c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %s", engineMessage(err))
	}
	out := make([]driver.Status, 0, len(list))
	for _, c := range list {
		st, err := d.Inspect(ctx, c.ID)
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, id string) (driver.Status, error) {
	okc, errc := d.c.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-okc:
	case err := <-errc:
		if errdefs.IsNotFound(err) {
			return driver.Status{}, driver.ErrNotFound
		}
		if ctx.Err() != nil {
			return driver.Status{}, ctx.Err()
		}
		return driver.Status{}, fmt.Errorf("wait: %s", engineMessage(err))
	case <-ctx.Done():
		return driver.Status{}, ctx.Err()
	}
	return d.Inspect(ctx, id)
}

// Logs implements driver.Driver: stdout and stderr demultiplexed into one
// plain stream.
func (d *Driver) Logs(ctx context.Context, id string, o driver.LogOptions) (io.ReadCloser, error) {
	tail := "all"
	if o.Tail > 0 {
		tail = strconv.Itoa(o.Tail)
	}
	rc, err := d.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true,
		Follow: o.Follow, Tail: tail, Timestamps: o.Timestamps})
	if errdefs.IsNotFound(err) {
		return nil, driver.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("logs: %s", engineMessage(err))
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// DialInside implements driver.InsideDialer: it connects to
// 127.0.0.1:port inside the container's network namespace.
func (d *Driver) DialInside(ctx context.Context, id, network string, port int) (net.Conn, error) {
	c, err := d.c.ContainerInspect(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil, driver.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("inspect container: %s", engineMessage(err))
	}
	if c.State == nil || !c.State.Running {
		return nil, fmt.Errorf("container is not running")
	}
	return netns.Dial(ctx, c.State.Pid, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// maxExecOutput bounds what Exec returns.
const maxExecOutput = 4096

// Exec implements driver.Driver.
func (d *Driver) Exec(ctx context.Context, id string, cmd []string) (driver.ExecResult, error) {
	created, err := d.c.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if errdefs.IsNotFound(err) {
		return driver.ExecResult{}, driver.ErrNotFound
	}
	if err != nil {
		return driver.ExecResult{}, fmt.Errorf("exec: %s", engineMessage(err))
	}
	att, err := d.c.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return driver.ExecResult{}, fmt.Errorf("exec attach: %s", engineMessage(err))
	}
	defer att.Close()
	var out limitedBuffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil && ctx.Err() == nil {
		return driver.ExecResult{}, fmt.Errorf("exec output: %w", err)
	}
	if ctx.Err() != nil {
		return driver.ExecResult{}, ctx.Err()
	}
	ins, err := d.c.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return driver.ExecResult{}, fmt.Errorf("exec inspect: %s", engineMessage(err))
	}
	return driver.ExecResult{ExitCode: ins.ExitCode, Output: out.String()}, nil
}

// limitedBuffer keeps the first maxExecOutput bytes written to it.
type limitedBuffer struct{ b []byte }

// Write keeps what fits and reports everything written.
func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxExecOutput - len(l.b); room > 0 {
		if len(p) > room {
			l.b = append(l.b, p[:room]...)
		} else {
			l.b = append(l.b, p...)
		}
	}
	return len(p), nil
}

// String returns what was kept.
func (l *limitedBuffer) String() string { return string(l.b) }

var (
	_ driver.Driver       = (*Driver)(nil)
	_ driver.InsideDialer = (*Driver)(nil)
)

// pullOptions carries auth to the engine (a user name and password, or
// the entry of a docker config.json for ref's registry).
func pullOptions(ref string, auth *driver.RegistryAuth) (image.PullOptions, error) {
	if auth == nil {
		return image.PullOptions{}, nil
	}
	user, pass := auth.Username, auth.Password
	if user == "" && len(auth.DockerConfig) > 0 {
		var err error
		if user, pass, err = berthimage.ConfigCredentials(auth.DockerConfig, ref); err != nil {
			return image.PullOptions{}, err
		}
	}
	enc, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: user, Password: pass})
	if err != nil {
		return image.PullOptions{}, err
	}
	return image.PullOptions{RegistryAuth: enc}, nil
}
