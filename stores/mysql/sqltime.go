package mysqlstore

import (
	"database/sql"
	"fmt"
	"time"
)

// Every time the store writes or compares is UTC: it writes DATETIME(6)
// literals it formats itself and takes "now" from UTC_TIMESTAMP(6), so
// neither the session time_zone nor the driver's loc option matters.
const datetimeLayout = "2006-01-02 15:04:05.000000"

// datetime returns t as a DATETIME(6) literal in UTC.
func datetime(t time.Time) string {
	return "'" + t.UTC().Format(datetimeLayout) + "'"
}

// utcTime scans a DATETIME column, NULL or not, whatever the driver's
// parseTime and loc options are.
type utcTime struct {
	time.Time
	Valid bool
}

var _ sql.Scanner = (*utcTime)(nil)

// Scan implements sql.Scanner.
func (u *utcTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*u = utcTime{}
	case time.Time:
		// With parseTime the driver read the wall clock in its loc; the
		// wall clock is UTC.
		u.Time = time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), time.UTC)
		u.Valid = true
	case []byte:
		return u.parse(string(v))
	case string:
		return u.parse(v)
	default:
		return fmt.Errorf("mysqlstore: cannot read %T as a DATETIME", v)
	}
	return nil
}

func (u *utcTime) parse(s string) error {
	t, err := time.Parse("2006-01-02 15:04:05.999999", s)
	if err != nil {
		return fmt.Errorf("mysqlstore: reading a DATETIME: %w", err)
	}
	u.Time, u.Valid = t, true
	return nil
}

// micros returns d in whole microseconds, at least 0.
func micros(d time.Duration) int64 {
	return max(0, int64(d/time.Microsecond))
}
