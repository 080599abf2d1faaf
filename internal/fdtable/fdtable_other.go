//go:build !linux

package fdtable

import "errors"

func reserve(int) (int, error) { return 0, nil }

func size(int) (int, error) {
	return 0, errors.New("fdtable: the descriptor table's size is known on Linux only")
}
