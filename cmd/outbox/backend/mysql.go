package backend

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"

	mysqlstore "github.com/txoutbox/txoutbox/stores/mysql"
)

// openMySQL accepts mysql://user:password@host:port/db?param=value (the
// parameters are go-sql-driver's) and a go-sql-driver DSN as it is.
func openMySQL(raw string, o StoreOptions, bad func(string) error) (*Store, error) {
	cfg, err := MySQLConfig(raw)
	if err != nil {
		return nil, bad(err.Error())
	}
	if cfg.DBName == "" {
		return nil, bad("no database; name it as the URL's path")
	}
	if !strings.Contains(raw, "interpolateParams") {
		cfg.InterpolateParams = true // one round trip per statement instead of two
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultConnectTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, bad(err.Error())
	}
	db := sql.OpenDB(connector) // connects lazily
	store, err := mysqlstore.New(db, mysqlstore.Config{Table: o.Table, Lanes: o.Lanes})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	shown := *cfg
	if shown.Passwd != "" {
		shown.Passwd = redacted
	}
	display := "mysql://" + shown.User
	if shown.Passwd != "" {
		display += ":" + shown.Passwd
	}
	display += "@" + shown.Addr + "/" + shown.DBName
	return &Store{
		Outbox:  store,
		Kind:    MySQL,
		Display: display + " table " + store.Table(),
		Target: Target{System: systemMySQL, Addr: cfg.Addr, User: cfg.User, Database: cfg.DBName,
			Table: store.Table(), TableKind: "table", URL: Redact(raw), server: &serverName{ask: mysqlServer(store, connector)}},
		closers: []func() error{db.Close},
	}, nil
}

// mysqlServer asks the server behind store its name ("MariaDB 10.11.6",
// the store tells from VERSION()), or through a connection of its own once
// the command has closed the store: the CLI explains a command's error
// after the command returned.
func mysqlServer(store *mysqlstore.Store, connector driver.Connector) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if name, err := store.Server(ctx); err == nil {
			return name, nil
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		db.SetMaxOpenConns(1)
		alone, err := mysqlstore.New(db, mysqlstore.Config{})
		if err != nil {
			return "", err
		}
		return alone.Server(ctx)
	}
}

// MySQLConfig reads a mysql:// (or mariadb://) URL — mysql://user:password@host:3306/db?param=value,
// the parameters being go-sql-driver's — or a go-sql-driver DSN as it is. Errors never show
// the password. The demo and the bench read their --store with it too.
func MySQLConfig(raw string) (*mysql.Config, error) {
	lower := strings.ToLower(raw)
	if !strings.HasPrefix(lower, "mysql://") && !strings.HasPrefix(lower, "mariadb://") {
		cfg, err := mysql.ParseDSN(raw)
		if err != nil {
			return nil, errorWithoutSecret(err, raw)
		}
		return cfg, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errorWithoutSecret(err, raw)
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:3306"
	} else if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if u.RawQuery == "" {
		return cfg, nil
	}
	// The driver reads its own parameters: format the DSN and parse it back.
	dsn := cfg.FormatDSN()
	if strings.Contains(dsn, "?") {
		dsn += "&" + u.RawQuery
	} else {
		dsn += "?" + u.RawQuery
	}
	parsed, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, errorWithoutSecret(err, dsn)
	}
	return parsed, nil
}
