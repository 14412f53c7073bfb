//go:build windows

package store

import "io/fs"

// checkPerm: Windows access is governed by ACLs, not mode bits; files under
// the user's profile directory inherit an ACL that excludes other users.
func checkPerm(fi fs.FileInfo) error { return nil }

// syncDir: Windows has no directory fsync; MoveFileEx is durable enough.
func syncDir(dir string) error { return nil }
