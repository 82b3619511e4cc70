package agent

import "testing"

func TestWithGPUs(t *testing.T) {
	env := map[string]string{"A": "1"}
	got := withGPUs(env, []int{0, 2})
	if got["NVIDIA_VISIBLE_DEVICES"] != "0,2" || got["BERTH_GPUS"] != "0,2" || got["A"] != "1" || len(env) != 1 {
		t.Fatalf("withGPUs = %v (input %v)", got, env)
	}
}
