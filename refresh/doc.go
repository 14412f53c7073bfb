// Package refresh is tokenward's token cache: lock-free reads, early background
// refresh, single-flight, cross-process locking and persistence before use.
package refresh
