package servers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// FindBinary returns the first of names found on PATH, then the first found
// in dirs (which may be glob patterns; matches are tried newest version
// first), or an error listing where it looked.
func FindBinary(names []string, dirs ...string) (string, error) {
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	for _, pattern := range dirs {
		matches, _ := filepath.Glob(pattern)
		sortVersionsDescending(matches)
		for _, dir := range matches {
			for _, name := range names {
				if path := filepath.Join(dir, name); isExecutable(path) {
					return path, nil
				}
			}
		}
	}
	where := "PATH"
	if len(dirs) > 0 {
		where += ", " + strings.Join(dirs, ", ")
	}
	return "", fmt.Errorf("no %s found on %s", strings.Join(names, " or "), where)
}

// sortVersionsDescending orders paths such as /usr/lib/postgresql/9/bin and
// /usr/lib/postgresql/16/bin by the numbers in them, highest first.
func sortVersionsDescending(paths []string) {
	key := func(p string) []int {
		var nums []int
		for _, f := range strings.FieldsFunc(p, func(r rune) bool { return r < '0' || r > '9' }) {
			n, _ := strconv.Atoi(f)
			nums = append(nums, n)
		}
		return nums
	}
	slices.SortFunc(paths, func(a, b string) int {
		ka, kb := key(a), key(b)
		for i := 0; i < len(ka) && i < len(kb); i++ {
			if ka[i] != kb[i] {
				return kb[i] - ka[i]
			}
		}
		return strings.Compare(b, a)
	})
}

// FindDir returns the first directory that holds all of names: the directory
// of names[0] on PATH (after symbolic links), then dirs, which may be glob
// patterns tried newest version first. It is for programs that must come
// from one installation, such as initdb and postgres.
func FindDir(names []string, dirs ...string) (string, error) {
	var candidates []string
	if path, err := exec.LookPath(names[0]); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, filepath.Dir(path))
	}
	for _, pattern := range dirs {
		matches, _ := filepath.Glob(pattern)
		sortVersionsDescending(matches)
		candidates = append(candidates, matches...)
	}
	for _, dir := range candidates {
		if slices.IndexFunc(names, func(n string) bool { return !isExecutable(filepath.Join(dir, n)) }) < 0 {
			return dir, nil
		}
	}
	where := "PATH"
	if len(dirs) > 0 {
		where += ", " + strings.Join(dirs, ", ")
	}
	return "", fmt.Errorf("no directory with %s found on %s", strings.Join(names, " and "), where)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
