package agent

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/model"
)

// FakeGPUsEnv, set to a count N, makes the agent advertise N fake GPU
// devices (indexes 0..N-1, name "fake-gpu") instead of asking nvidia-smi:
// for tests and demos of GPU scheduling on hosts without GPUs.
const FakeGPUsEnv = "BERTH_FAKE_GPUS"

// gpuSource is where GPUs come from: a fake count, else nvidia-smi's
// output (run returns "" when nvidia-smi is missing or fails).
type gpuSource struct {
	fake string
	run  func() string
}

// detectGPUs lists the host's GPU devices; none when there are none.
func detectGPUs(src gpuSource) []model.GPU {
	if src.fake != "" {
		n, err := strconv.Atoi(strings.TrimSpace(src.fake))
		if err != nil || n < 0 {
			return nil
		}
		out := make([]model.GPU, n)
		for i := range out {
			out[i] = model.GPU{Index: i, Name: "fake-gpu"}
		}
		return out
	}
	if src.run == nil {
		return nil
	}
	return parseNvidiaSMI(src.run())
}

// runNvidiaSMI queries the NVIDIA driver; "" when it is not installed or
// does not answer within 10s.
func runNvidiaSMI() string {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=index,name,memory.total", "--format=csv,noheader").Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// parseNvidiaSMI reads lines like "0, NVIDIA A100-SXM4-40GB, 40960 MiB";
// lines it cannot read are skipped.
func parseNvidiaSMI(out string) []model.GPU {
	var gpus []model.GPU
	for _, line := range strings.Split(out, "\n") {
		parts := strings.Split(line, ",")
		if len(parts) < 2 {
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSpace(parts[0]))
		if err != nil || idx < 0 {
			continue
		}
		g := model.GPU{Index: idx, Name: strings.TrimSpace(parts[1])}
		if len(parts) >= 3 {
			f := strings.Fields(parts[2])
			if mib, err := strconv.ParseInt(firstOr(f, ""), 10, 64); err == nil && len(f) == 2 && f[1] == "MiB" {
				g.Memory = model.ByteSize(mib << 20)
			}
		}
		gpus = append(gpus, g)
	}
	return gpus
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}
