//go:build linux

package oci

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// resolveUser turns "uid[:gid]", "name[:group]" (or any mix) into numeric
// IDs, reading names from the image's /etc/passwd and /etc/group under
// root. Like Docker: an empty user is root; a numeric uid missing from
// passwd runs with gid 0; a name that is not in passwd is an error. The
// user's supplementary groups come from /etc/group.
func resolveUser(root, user string) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	passwd, err := readColonFile(root, "etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	var u specs.User
	userName := ""
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		u.UID = uint32(n)
		for _, f := range passwd {
			if len(f) >= 4 && f[2] == name {
				userName = f[0]
				u.GID = parseID(f[3])
				break
			}
		}
	} else {
		found := false
		for _, f := range passwd {
			if len(f) >= 4 && f[0] == name {
				found, userName = true, name
				u.UID, u.GID = parseID(f[2]), parseID(f[3])
				break
			}
		}
		if !found {
			return specs.User{}, fmt.Errorf("user %q: no such user in the image's /etc/passwd (use a numeric uid[:gid])", name)
		}
	}
	groups, err := readColonFile(root, "etc/group")
	if err != nil {
		return specs.User{}, err
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID = uint32(n)
		} else {
			found := false
			for _, f := range groups {
				if len(f) >= 3 && f[0] == group {
					found, u.GID = true, parseID(f[2])
					break
				}
			}
			if !found {
				return specs.User{}, fmt.Errorf("user %q: no such group %q in the image's /etc/group (use a numeric gid)", user, group)
			}
		}
	}
	if userName != "" {
		for _, f := range groups {
			if len(f) < 4 || f[3] == "" {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if gid := parseID(f[2]); m == userName && gid != u.GID {
					u.AdditionalGids = append(u.AdditionalGids, gid)
				}
			}
		}
	}
	return u, nil
}

// readColonFile reads a passwd- or group-style file at rel inside root,
// resolving symlinks as if root were "/" (an image cannot point it at the
// host's files); a missing file is empty.
func readColonFile(root, rel string) ([][]string, error) {
	f, err := openInRoot(root, rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the image's /%s: %w", rel, err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}

// openInRoot opens rel for reading with root as the filesystem root.
func openInRoot(root, rel string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
}

func parseID(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}
