// Package mysqlserver gives tests a MySQL or MariaDB server and a database of
// their own on it.
//
// The server is the one in OUTBOX_TEST_MYSQL_URL (a mysql:// URL or a
// go-sql-driver DSN), else a throwaway local one (mariadbd or mysqld from
// PATH or /usr/sbin), else a container of OUTBOX_TEST_MYSQL_IMAGE (mysql:8.0
// unless set, e.g. to mariadb:10.11); with none the test skips, or fails
// under OUTBOX_TEST_REQUIRE. See package servers, whose Main the test binary
// must call.
package mysqlserver

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/ory/dockertest/v3"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

// EnvImage names the Docker image of the throwaway container, e.g.
// "mariadb:10.11"; DefaultImage when unset.
const (
	EnvImage     = "OUTBOX_TEST_MYSQL_IMAGE"
	DefaultImage = "mysql:8.0"
)

var finder = servers.Finder[string]{
	Backend: servers.MySQL,
	FromEnv: func(v string) (string, error) {
		cfg, err := ParseDSN(v)
		if err != nil {
			return "", err
		}
		return cfg.FormatDSN(), nil
	},
	Local: func() (string, error) {
		dsn, _, err := startLocal()
		return dsn, err
	},
	Docker: startContainer,
}

// DSN returns a go-sql-driver DSN for the test server, with parseTime=true,
// finding the server on first use. Its database is the one the environment
// named, or none.
func DSN(t testing.TB) string {
	t.Helper()
	return finder.Get(t)
}

// Database creates a database for this test alone and drops it when the test
// ends. It returns a DSN pointing at that database, and its name.
func Database(t testing.TB) (dsn, name string) {
	t.Helper()
	base := DSN(t)
	name = servers.Name(t, "outbox")
	if err := execOnce(base, "CREATE DATABASE `"+name+"`"); err != nil {
		t.Fatalf("mysqlserver: create database: %v", err)
	}
	t.Cleanup(func() {
		if err := execOnce(base, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("mysqlserver: drop database %s: %v", name, err)
		}
	})
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("mysqlserver: %v", err)
	}
	cfg.DBName = name
	return cfg.FormatDSN(), name
}

// ParseDSN reads a mysql:// (or mariadb://) URL such as
// mysql://root:@127.0.0.1:3306/test, or a go-sql-driver DSN such as
// root:@tcp(127.0.0.1:3306)/test, and sets ParseTime.
func ParseDSN(s string) (*mysql.Config, error) {
	dsn := s
	if strings.HasPrefix(s, "mysql://") || strings.HasPrefix(s, "mariadb://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "3306")
		}
		var userinfo string
		if u.User != nil {
			userinfo = u.User.Username()
			if pass, ok := u.User.Password(); ok {
				userinfo += ":" + pass
			}
		}
		dsn = userinfo + "@tcp(" + host + ")/" + strings.TrimPrefix(u.Path, "/")
		if u.RawQuery != "" {
			dsn += "?" + u.RawQuery
		}
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("want a mysql:// URL or a go-sql-driver DSN: %w", err)
	}
	cfg.ParseTime = true
	return cfg, nil
}

// Version reports the server's flavor ("mysql" or "mariadb") and version.
func Version(ctx context.Context, db *sql.DB) (flavor string, major, minor int, err error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return "", 0, 0, err
	}
	flavor, major, minor, ok := parseVersion(v)
	if !ok {
		return "", 0, 0, fmt.Errorf("unrecognised server version %q", v)
	}
	return flavor, major, minor, nil
}

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)`)

// parseVersion reads "10.11.6-MariaDB-0+deb12u1", "8.0.36" or the output of
// mysqld --version.
func parseVersion(v string) (flavor string, major, minor int, ok bool) {
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return "", 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	flavor = "mysql"
	if strings.Contains(strings.ToLower(v), "mariadb") {
		flavor = "mariadb"
	}
	return flavor, major, minor, true
}

func execOnce(dsn, query string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, query)
	return err
}

func ping(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// rootDSN is the DSN of a throwaway server's password-less root.
func rootDSN(addr string) string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// serverDirs are where distributions install the server binary.
var serverDirs = []string{"/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin", "/usr/local/sbin"}

// startLocal initialises a data directory and runs the server in it, as the
// mysql user when the tests run as root.
func startLocal() (string, *servers.Process, error) {
	mysqld, err := servers.FindBinary([]string{"mariadbd", "mysqld"}, serverDirs...)
	if err != nil {
		return "", nil, err
	}
	out, err := versionOf(mysqld)
	if err != nil {
		return "", nil, err
	}
	flavor, major, _, ok := parseVersion(out)
	if !ok {
		return "", nil, fmt.Errorf("%s --version: unrecognised %q", mysqld, out)
	}

	user, err := servers.ServiceUser("mysql")
	if err != nil {
		return "", nil, err
	}
	dir, err := servers.TempDir("mysql", user)
	if err != nil {
		return "", nil, err
	}
	data := filepath.Join(dir, "data")

	init := servers.ProcessConfig{Name: "initialise " + flavor, Dir: dir, User: user, Timeout: 2 * time.Minute}
	if flavor == "mariadb" {
		init.Path, err = servers.FindBinary([]string{"mariadb-install-db", "mysql_install_db"},
			filepath.Dir(mysqld), filepath.Join(filepath.Dir(mysqld), "..", "bin"), filepath.Join(filepath.Dir(mysqld), "..", "scripts"))
		if err != nil {
			return "", nil, err
		}
		init.Args = []string{"--no-defaults", "--datadir=" + data,
			"--auth-root-authentication-method=normal", "--skip-test-db"}
	} else {
		init.Path = mysqld
		init.Args = []string{"--no-defaults", "--initialize-insecure", "--datadir=" + data}
	}
	if err := servers.RunCommand(init); err != nil {
		return "", nil, err
	}

	port, err := servers.FreePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{
		"--no-defaults", "--datadir=" + data,
		"--bind-address=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--socket=" + filepath.Join(dir, "mysqld.sock"), "--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--secure-file-priv=" + dir,
		"--max-connections=500", "--innodb-flush-log-at-trx-commit=2",
	}
	if flavor == "mysql" && major >= 8 {
		args = append(args, "--mysqlx=OFF", "--skip-log-bin")
	}
	dsn := rootDSN(addr)
	proc, err := servers.StartProcess(servers.ProcessConfig{
		Name: flavor, Path: mysqld, Args: args, Dir: dir, User: user,
		Addr:  addr,
		Ready: func(ctx context.Context) error { return ping(ctx, dsn) },
	})
	if err != nil {
		return "", nil, err
	}
	return dsn, proc, nil
}

// versionOf returns what the server binary says its version is.
func versionOf(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Image returns the repository and tag of the throwaway container's image.
func Image() (repository, tag string) {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	repository, tag = image, "latest"
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		repository, tag = image[:i], image[i+1:]
	}
	return repository, tag
}

func startContainer() (string, error) {
	repository, tag := Image()
	res, err := servers.RunContainer(&dockertest.RunOptions{
		Repository: repository,
		Tag:        tag,
		// The first for mysql images, the second for mariadb ones.
		Env:          []string{"MYSQL_ALLOW_EMPTY_PASSWORD=yes", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=yes"},
		Cmd:          []string{"--max-connections=500", "--innodb-flush-log-at-trx-commit=2"},
		ExposedPorts: []string{"3306/tcp"},
	})
	if err != nil {
		return "", err
	}
	dsn := rootDSN(servers.HostPort(res, "3306/tcp"))
	if err := servers.WaitContainer(res, func(ctx context.Context) error { return ping(ctx, dsn) }); err != nil {
		return "", err
	}
	return dsn, nil
}
