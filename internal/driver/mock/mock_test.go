package mock

import (
	"testing"

	"github.com/berth-dev/berth/internal/driver"
	"github.com/berth-dev/berth/internal/driver/drivertest"
)

// Programs expresses drivertest's programs in the mock step language.
var Programs = map[drivertest.Program][]string{
	drivertest.RunForever:      {"run"},
	drivertest.Exit0:           {"exit", "0"},
	drivertest.Exit3:           {"exit", "3"},
	drivertest.PrintEnv:        {"print", "greeting=$GREETING", ";", "stderr", "err-line", ";", "exit", "0"},
	drivertest.PrintRunExit1:   {"print", "run", ";", "exit", "1"},
	drivertest.TrapTerm:        {"print", "ready", ";", "trap-term", ";", "run"},
	drivertest.IgnoreTerm:      {"print", "ready", ";", "ignore-term", ";", "run"},
	drivertest.FirstThenSecond: {"print", "first", ";", "sleep", "1s", ";", "print", "second", ";", "run"},
	drivertest.ServeHTTP:       {"run"},
}

func TestConformance(t *testing.T) {
	d := New(Options{Node: "n1", Images: []string{"mock/app:1"}})
	drivertest.Run(t, drivertest.Harness{
		New:      func(*testing.T) driver.Driver { return d },
		Image:    "mock/app:1",
		Programs: Programs,
		Labels:   map[string]string{"berth.test": "1"},
		Caps:     drivertest.Capabilities{Pull: true},
	})
}

func TestBadCommandIsRefused(t *testing.T) {
	d := New(Options{Images: []string{"mock/app:1"}})
	if _, err := d.Start(t.Context(), driver.Task{InstanceID: "x", Image: "mock/app:1", Command: []string{"fly"}}); err == nil {
		t.Fatal("unknown step accepted")
	}
}
