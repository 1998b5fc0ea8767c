//go:build !unix

package sqlite

import "os"

// links returns 1: where it is not unix, the link count is not in
// os.FileInfo.
func links(os.FileInfo) uint64 { return 1 }
