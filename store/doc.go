// Package store keeps tokens where they belong: the OS keychain by default,
// an encrypted file, memory, or (only by explicit opt-in) a plaintext file.
package store
