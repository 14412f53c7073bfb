package fakekeychain

import "os/exec"

func runProgram(name string, args ...string) error { return exec.Command(name, args...).Run() }
