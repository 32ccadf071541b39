package app

import "fmt"

// FormatBytes writes a size in bytes for people, in powers of 1024:
// "512 B", "1.5 MiB", "17 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	if v < 9.95 {
		return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
	}
	return fmt.Sprintf("%.0f %ciB", v, "KMGTPE"[i])
}
