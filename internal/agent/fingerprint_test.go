package agent

import (
	"reflect"
	"runtime"
	"testing"

	"github.com/berth-dev/berth/internal/model"
)

func TestParseNvidiaSMI(t *testing.T) {
	out := "0, NVIDIA A100-SXM4-40GB, 40960 MiB\n1, NVIDIA A100-SXM4-40GB, 40960 MiB\n\nNo devices were found\n3, Tesla T4, [N/A]\n"
	want := []model.GPU{
		{Index: 0, Name: "NVIDIA A100-SXM4-40GB", Memory: 40960 << 20},
		{Index: 1, Name: "NVIDIA A100-SXM4-40GB", Memory: 40960 << 20},
		{Index: 3, Name: "Tesla T4"},
	}
	if got := parseNvidiaSMI(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
}

func TestDetectGPUs(t *testing.T) {
	smi := func() string { return "0, Tesla T4, 15360 MiB\n" }
	cases := []struct {
		name string
		src  gpuSource
		want int
	}{
		{"fake count wins", gpuSource{fake: "2", run: smi}, 2},
		{"fake zero hides real ones", gpuSource{fake: "0", run: smi}, 0},
		{"bad fake count", gpuSource{fake: "x", run: smi}, 0},
		{"nvidia-smi", gpuSource{run: smi}, 1},
		{"no nvidia-smi", gpuSource{run: func() string { return "" }}, 0},
	}
	for _, tc := range cases {
		if got := detectGPUs(tc.src); len(got) != tc.want {
			t.Errorf("%s: %d gpus, want %d", tc.name, len(got), tc.want)
		}
	}
	if g := detectGPUs(gpuSource{fake: "2"}); g[1] != (model.GPU{Index: 1, Name: "fake-gpu"}) {
		t.Errorf("fake device %+v", g[1])
	}
}

func TestFingerprintApply(t *testing.T) {
	t.Setenv(FakeGPUsEnv, "2")
	fp := Detect()
	if fp.Arch != runtime.GOARCH || fp.OS != runtime.GOOS || fp.Capacity.GPUs != 2 || len(fp.GPUs) != 2 {
		t.Fatalf("fingerprint %+v", fp)
	}
	if runtime.GOOS == "linux" && fp.Kernel == "" {
		t.Fatal("no kernel release on linux")
	}
	n := model.Node{Labels: map[string]string{"berth.region": "eu", "berth.zone": "eu-1a"}}
	fp.Apply(&n)
	if n.Region != "eu" || n.Zone != "eu-1a" || n.Arch != runtime.GOARCH || n.Capacity.GPUs != 2 || len(n.GPUIndexes()) != 2 {
		t.Fatalf("node %+v", n)
	}
}
