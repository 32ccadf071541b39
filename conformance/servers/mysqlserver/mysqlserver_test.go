package mysqlserver

import (
	"context"
	"database/sql"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

func TestParseDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                   string
		user, pass, addr, db string
	}{
		{"mysql://root:@127.0.0.1:3306/test", "root", "", "127.0.0.1:3306", "test"},
		{"mysql://app:s3cret@db.example:3307/outbox?tls=false", "app", "s3cret", "db.example:3307", "outbox"},
		{"mariadb://root@localhost/x", "root", "", "localhost:3306", "x"},
		{"root:@tcp(127.0.0.1:3306)/test", "root", "", "127.0.0.1:3306", "test"},
		{"app:pw@tcp(10.0.0.1:3306)/", "app", "pw", "10.0.0.1:3306", ""},
	}
	for _, tt := range tests {
		cfg, err := ParseDSN(tt.in)
		if err != nil {
			t.Errorf("ParseDSN(%q): %v", tt.in, err)
			continue
		}
		if cfg.User != tt.user || cfg.Passwd != tt.pass || cfg.Addr != tt.addr || cfg.DBName != tt.db || !cfg.ParseTime {
			t.Errorf("ParseDSN(%q) = user %q pass %q addr %q db %q parseTime %v, want %q %q %q %q true",
				tt.in, cfg.User, cfg.Passwd, cfg.Addr, cfg.DBName, cfg.ParseTime, tt.user, tt.pass, tt.addr, tt.db)
		}
	}
	if _, err := ParseDSN("not a dsn"); err == nil {
		t.Error("ParseDSN accepted garbage")
	}
}

func TestImage(t *testing.T) {
	tests := map[string][2]string{
		"":                         {"mysql", "8.0"},
		"mariadb:10.11":            {"mariadb", "10.11"},
		"mysql":                    {"mysql", "latest"},
		"localhost:5000/mysql:8.4": {"localhost:5000/mysql", "8.4"},
	}
	for env, want := range tests {
		t.Setenv(EnvImage, env)
		if repo, tag := Image(); repo != want[0] || tag != want[1] {
			t.Errorf("%s=%q: Image() = %q, %q, want %q, %q", EnvImage, env, repo, tag, want[0], want[1])
		}
	}
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in           string
		flavor       string
		major, minor int
	}{
		{"10.11.6-MariaDB-0+deb12u1", "mariadb", 10, 11},
		{"8.0.36", "mysql", 8, 0},
		{"/usr/sbin/mysqld  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)", "mysql", 8, 4},
		{"mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)", "mariadb", 10, 11},
	}
	for _, tt := range tests {
		flavor, major, minor, ok := parseVersion(tt.in)
		if !ok || flavor != tt.flavor || major != tt.major || minor != tt.minor {
			t.Errorf("parseVersion(%q) = %q %d.%d %v, want %q %d.%d", tt.in, flavor, major, minor, ok, tt.flavor, tt.major, tt.minor)
		}
	}
}

func databaseExists(t *testing.T, dsn, name string) bool {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	err = db.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestDatabaseIsCreatedAndDropped(t *testing.T) {
	t.Parallel()
	base := DSN(t) // skips here rather than in the subtest
	var name string
	t.Run("use", func(t *testing.T) {
		var dsn string
		dsn, name = Database(t)
		if !databaseExists(t, base, name) {
			t.Fatalf("database %s does not exist during the test", name)
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var current string
		if err := db.QueryRow("SELECT DATABASE()").Scan(&current); err != nil {
			t.Fatal(err)
		}
		if current != name {
			t.Errorf("the DSN's database is %q, want %q", current, name)
		}
		if _, err := db.Exec("CREATE TABLE t (id int)"); err != nil {
			t.Errorf("create a table: %v", err)
		}
	})
	if databaseExists(t, base, name) {
		t.Errorf("database %s still exists after the test", name)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("mysql", DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	flavor, major, minor, err := Version(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if flavor != "mysql" && flavor != "mariadb" || major < 5 {
		t.Errorf("Version = %q %d.%d", flavor, major, minor)
	}
	t.Logf("server: %s %d.%d", flavor, major, minor)
}

// TestLocalServer exercises the local-binary path even where
// OUTBOX_TEST_MYSQL_URL names a server.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	if _, err := servers.FindBinary([]string{"mariadbd", "mysqld"}, serverDirs...); err != nil {
		t.Skipf("no local MariaDB or MySQL: %v", err)
	}
	dsn, proc, err := startLocal()
	if err != nil {
		t.Fatalf("start local server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ping(ctx, dsn); err != nil {
		t.Fatalf("ping local server: %v", err)
	}
	if err := execOnce(dsn, "CREATE DATABASE local_smoke"); err != nil {
		t.Errorf("create a database as root: %v", err)
	}

	if err := proc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", cfg.Addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still answers after Stop", cfg.Addr)
	}
}
