package mysqlstore

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	outbox "github.com/txoutbox/txoutbox/core"
)

// serverInfo is what the store knows of the server it talks to.
type serverInfo struct {
	version          string // the number in VERSION(), e.g. "10.11.6"
	mariaDB          bool
	major, minor     int
	maxAllowedPacket int64
}

// Oldest supported versions. Older lines are end of life and not tested;
// the store refuses them rather than fail in some later statement.
const (
	minMySQLMajor, minMySQLMinor     = 8, 0
	minMariaDBMajor, minMariaDBMinor = 10, 6
)

// checkServer reads the server's version and max_allowed_packet once, and
// reports an unsupported server with a one-line error matching
// [outbox.ErrUnsupported].
func (s *Store) checkServer(ctx context.Context) (*serverInfo, error) {
	if info := s.server.Load(); info != nil {
		return info, nil
	}
	var version string
	var packet int64
	if err := s.db.QueryRowContext(ctx, "SELECT VERSION(), @@max_allowed_packet").Scan(&version, &packet); err != nil {
		return nil, translate("read server version", err)
	}
	info, err := parseServer(version)
	if err != nil {
		return nil, err
	}
	info.maxAllowedPacket = packet
	if err := info.supported(); err != nil {
		return nil, err
	}
	if need := int64(requiredPacket(s.cfg.maxPayload())); packet < need {
		return nil, fmt.Errorf("%w: %s: max_allowed_packet is %d bytes; raise it to at least %d, or lower mysqlstore.Config.Limits.MaxPayloadBytes (%d)",
			outbox.ErrUnsupported, info.name(), packet, need, s.cfg.maxPayload())
	}
	s.server.Store(info)
	return info, nil
}

// Server names the server the store talks to and its version, as
// "MariaDB 10.11.6" or "MySQL 8.0.36" (VERSION() says which). It reports an
// unsupported server as [Store.Migrate] does, with an error matching
// [outbox.ErrUnsupported].
func (s *Store) Server(ctx context.Context) (string, error) {
	info, err := s.checkServer(ctx)
	if err != nil {
		return "", err
	}
	return info.name(), nil
}

// requiredPacket is the max_allowed_packet an Enqueue of messages up to
// maxPayload bytes needs: a statement carries up to insertBudget bytes of
// payload and headers, or one larger message, escaped (up to twice as long)
// when the DSN sets interpolateParams, plus the SQL around them.
func requiredPacket(maxPayload int) int {
	return 2*max(maxPayload, insertBudget) + 64<<10
}

var versionNumber = regexp.MustCompile(`^(\d+)\.(\d+)(\.\d+)?`)

// parseServer reads VERSION(): "8.0.36", "8.4.0-log",
// "10.11.6-MariaDB-0+deb12u1", "5.5.5-10.6.12-MariaDB" (an old replication
// prefix).
func parseServer(version string) (*serverInfo, error) {
	v := strings.TrimPrefix(version, "5.5.5-")
	m := versionNumber.FindStringSubmatch(v)
	if m == nil {
		return nil, fmt.Errorf("%w: cannot read the server version %q; mysqlstore needs MySQL %d.%d+ or MariaDB %d.%d+",
			outbox.ErrUnsupported, version, minMySQLMajor, minMySQLMinor, minMariaDBMajor, minMariaDBMinor)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return &serverInfo{
		version: m[0],
		mariaDB: strings.Contains(strings.ToLower(version), "mariadb"),
		major:   major,
		minor:   minor,
	}, nil
}

func (i *serverInfo) name() string {
	if i.mariaDB {
		return "MariaDB " + i.version
	}
	return "MySQL " + i.version
}

// supported returns nil, or a one-line error matching
// [outbox.ErrUnsupported] that names the version needed.
func (i *serverInfo) supported() error {
	wantMajor, wantMinor, family := minMySQLMajor, minMySQLMinor, "MySQL"
	if i.mariaDB {
		wantMajor, wantMinor, family = minMariaDBMajor, minMariaDBMinor, "MariaDB"
	}
	if i.major > wantMajor || i.major == wantMajor && i.minor >= wantMinor {
		return nil
	}
	return fmt.Errorf("%w: %s: mysqlstore needs %s %d.%d or later",
		outbox.ErrUnsupported, i.name(), family, wantMajor, wantMinor)
}
