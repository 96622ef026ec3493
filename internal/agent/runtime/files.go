package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The files of one container, all in Root/<id>/.
const (
	specFile    = "spec.json"    // containerRecord, written by Create
	shimFile    = "shim.json"    // procRecord of the shim, written by the shim
	startedFile = "started.json" // startRecord, written by the shim once the process runs
	exitFile    = "exit.json"    // exitRecord, written by the shim when the process exited
	shimLogFile = "shim.log"     // the shim's stderr
	sockFile    = "shim.sock"    // the shim's control socket
	runcDir     = "runc"         // libcontainer's root; its state is in runc/<id>/
)

// containerRecord is what Create hands to the shim.
type containerRecord struct {
	Spec ContainerSpec `json:"spec"`
	// CgroupPath is the container's cgroup, "/" + CgroupParent + "/" + ID.
	CgroupPath string `json:"cgroupPath"`
	// CgroupRoot bounds the empty parent cgroups Remove deletes.
	CgroupRoot string    `json:"cgroupRoot"`
	CreatedAt  time.Time `json:"createdAt"`
}

// procRecord identifies a process across PID reuse.
type procRecord struct {
	Pid int `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks since boot).
	StartTime uint64 `json:"startTime"`
}

type startRecord struct {
	procRecord
	StartedAt time.Time `json:"startedAt"`
}

type exitRecord struct {
	ExitCode   int       `json:"exitCode"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt"`
}

func containerDir(root, id string) string { return filepath.Join(root, id) }

func socketPath(root, id string) string { return filepath.Join(root, id, sockFile) }

// readJSON decodes path into v and reports false if it does not exist.
func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

// procStat reads a process's state letter and start time from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, startTime uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name, field 2, is in parentheses and may hold anything.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	startTime, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return fields[0][0], startTime, nil
}

// selfRecord identifies the calling process.
func selfRecord() (procRecord, error) {
	pid := os.Getpid()
	_, start, err := procStat(pid)
	if err != nil {
		return procRecord{}, err
	}
	return procRecord{Pid: pid, StartTime: start}, nil
}

// alive reports whether the recorded process still runs: same PID, same start
// time, and not a zombie.
func (p procRecord) alive() bool {
	if p.Pid <= 0 {
		return false
	}
	state, start, err := procStat(p.Pid)
	return err == nil && start == p.StartTime && state != 'Z' && state != 'X'
}
