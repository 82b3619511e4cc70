//go:build linux

package oci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMoveHybridControllers(t *testing.T) {
	root := tempDir(t)
	var mounted []string
	mount := func(dir, c string) error {
		mounted = append(mounted, c+"@"+strings.TrimPrefix(dir, root))
		return nil
	}
	if err := moveHybridControllers(root, mount); err != nil || len(mounted) != 0 {
		t.Fatalf("not hybrid: %v %v", mounted, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "unified"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := moveHybridControllers(root, mount); err != nil || len(mounted) != 0 {
		t.Fatalf("hybrid without controllers on v2: %v %v", mounted, err)
	}
	if err := os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), []byte("hugetlb rdma\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := moveHybridControllers(root, mount); err != nil || !reflect.DeepEqual(mounted, []string{"hugetlb@/hugetlb", "rdma@/rdma"}) {
		t.Fatalf("mounted %v, %v", mounted, err)
	}
	err := moveHybridControllers(root, func(string, string) error { return errors.New("busy") })
	if err == nil || !strings.Contains(err.Error(), "mount -t cgroup -o hugetlb cgroup "+root+"/hugetlb") {
		t.Fatalf("failure does not say what to run: %v", err)
	}
}
