//go:build !windows

package store

import (
	"io/fs"
	"os"
)

// checkPerm refuses files and directories that group or others can access.
func checkPerm(fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return fail(ErrInsecurePermissions, fi.Name()+" has mode "+fi.Mode().Perm().String(), nil)
	}
	return nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
