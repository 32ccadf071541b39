package backend

import (
	"strings"

	sqlitestore "github.com/txoutbox/txoutbox/stores/sqlite"
)

// openSQLite accepts sqlite:///absolute/path.db and sqlite:relative/path.db.
func openSQLite(raw string, o StoreOptions, bad func(string) error) (*Store, error) {
	path, err := sqlitePath(raw)
	if err != nil {
		return nil, bad(err.Error())
	}
	target := Target{System: systemSQLite, Addr: path, TableKind: "table", URL: raw}
	db, err := sqlitestore.Open(path)
	if err != nil {
		return nil, &TargetError{Target: target, Err: err}
	}
	store, err := sqlitestore.New(db, sqlitestore.Config{Table: o.Table, Lanes: o.Lanes})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	target.Table = store.Table()
	return &Store{
		Outbox:  store,
		Kind:    SQLite,
		Display: "sqlite:" + path + " table " + store.Table(),
		Target:  target,
		closers: []func() error{db.Close, store.Close},
	}, nil
}

func sqlitePath(raw string) (string, error) {
	_, rest, _ := strings.Cut(raw, ":")
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		return "", errorf("parameters are not supported but lanes=N; the store opens the file with the settings it needs")
	}
	switch {
	case strings.HasPrefix(rest, "///"):
		rest = rest[2:] // sqlite:///abs/path: an empty host and an absolute path
	case strings.HasPrefix(rest, "//"):
		return "", errorf("write sqlite:///absolute/path.db (three slashes) or sqlite:relative/path.db")
	}
	if rest == "" || strings.HasSuffix(rest, "/") {
		return "", errorf("no database file")
	}
	return rest, nil
}
