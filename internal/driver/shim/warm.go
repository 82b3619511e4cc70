package shim

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A shim is this binary re-executed, and starting it (exec plus the
// initialisation of every package berth links) costs a few milliseconds:
// more than the rest of a start under crun. So Launch keeps one shim
// started ahead of need, idle and waiting on a control pipe for the
// directory of the workload it is to run; the next Launch hands it one
// and starts the next spare in the background. A spare whose parent goes
// away reads EOF and exits.

// envShimWarm marks a shim that reads its directory from fd 4.
const envShimWarm = "BERTH_SHIM_WARM"

// refillDelay is how long after a Launch the next spare is started.
const refillDelay = 100 * time.Millisecond

// started is a shim process Launch can hand a workload to.
type started struct {
	cmd    *exec.Cmd
	ctl    *os.File      // write end: the workload directory, one line
	report *os.File      // read end: "ok" or "error: ..." once started
	exited chan struct{} // closed when the process has been reaped
}

// spare is the idle shim; at most one, made after the first Launch.
var spare struct {
	sync.Mutex
	s *started
	// filling is set while a spare is being started.
	filling bool
}

// takeShim returns the spare shim, or starts one now.
func takeShim() (*started, error) {
	spare.Lock()
	s := spare.s
	spare.s = nil
	spare.Unlock()
	if s != nil {
		select {
		case <-s.exited: // it died while idle; start another
		default:
			return s, nil
		}
	}
	return startShim()
}

// refillSpare starts the next spare unless there is one or one is being
// started.
func refillSpare() {
	spare.Lock()
	if spare.s != nil || spare.filling {
		spare.Unlock()
		return
	}
	spare.filling = true
	spare.Unlock()
	s, err := startShim() // on error the next Launch starts one itself and reports it
	spare.Lock()
	defer spare.Unlock()
	spare.filling = false
	if err == nil {
		spare.s = s
	}
}

// startShim starts a detached shim that waits for its directory.
func startShim() (*started, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("shim: %w", err)
	}
	defer devnull.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("shim: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		repR.Close()
		repW.Close()
		return nil, fmt.Errorf("shim: %w", err)
	}
	cmd := selfCommand("berth-shim")
	cmd.Env = []string{envShimWarm + "=1", defaultPath}
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{repW, ctlR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	repW.Close()
	ctlR.Close()
	if err != nil {
		repR.Close()
		ctlW.Close()
		return nil, fmt.Errorf("shim: start %s: %w", selfExe, err)
	}
	s := &started{cmd: cmd, ctl: ctlW, report: repR, exited: make(chan struct{})}
	// Reap the shim if it ends while this process lives; it is detached,
	// so nothing else waits for it here.
	go func() { _ = cmd.Wait(); close(s.exited) }()
	return s, nil
}

// warmDir is a spare shim's wait for its workload directory on fd 4; ok
// is false when its parent closed the pipe without handing one over.
func warmDir() (string, bool) {
	ctl := os.NewFile(4, "shim-control")
	defer ctl.Close()
	line, err := bufio.NewReader(ctl).ReadString('\n')
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(line), true
}
