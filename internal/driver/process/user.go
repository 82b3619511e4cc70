//go:build linux

package process

import (
	"fmt"
	"os/user"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/driver/shim"
)

// defaultPath is the PATH a workload gets when its Env has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// credential resolves Task.User: "" (run as the agent, root), "uid[:gid]",
// or "name[:group]" from /etc/passwd and /etc/group. A named user gets its
// supplementary groups; a numeric one none.
func credential(spec string) (*shim.Credential, error) {
	if spec == "" {
		return nil, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	c := &shim.Credential{}
	if uid, err := strconv.ParseUint(name, 10, 32); err == nil {
		c.UID, c.GID = uint32(uid), uint32(uid)
		if u, err := user.LookupId(name); err == nil {
			if gid, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
				c.GID = uint32(gid)
			}
		}
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("user %q is neither a uid nor a user in /etc/passwd", name)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.UID, c.GID = uint32(uid), uint32(gid)
		if ids, err := u.GroupIds(); err == nil {
			for _, g := range ids {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != c.GID {
					c.Groups = append(c.Groups, uint32(n))
				}
			}
		}
	}
	if hasGroup {
		if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
			c.GID = uint32(gid)
		} else if g, err := user.LookupGroup(group); err == nil {
			n, _ := strconv.ParseUint(g.Gid, 10, 32)
			c.GID = uint32(n)
		} else {
			return nil, fmt.Errorf("group %q: not a gid and not in /etc/group", group)
		}
	}
	return c, nil
}

// environ turns a task's Env into KEY=VALUE lines (sorted, so the stored
// spec is stable), adding PATH when it is missing.
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env)+1)
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	if _, ok := env["PATH"]; !ok {
		out = append(out, "PATH="+defaultPath)
	}
	sort.Strings(out)
	return out
}
