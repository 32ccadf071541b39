package app

import "time"

// RoundDuration rounds d for people: whole seconds from a minute up,
// tenths of a second from a second, milliseconds below.
func RoundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
