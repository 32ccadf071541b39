package backend

import (
	"context"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

// defaultServerSelection bounds the wait for a suitable server when the URL
// does not say (the driver's default is 30s).
const defaultServerSelection = 10 * time.Second

func openMongo(raw string, o StoreOptions, bad func(string) error) (*Store, error) {
	database := mongoDatabase(raw)
	if database == "" {
		return nil, bad("no database; name it as the URL's path")
	}
	opts := options.Client().ApplyURI(raw)
	if !hasParam(raw, "appName") {
		opts.SetAppName(o.appName())
	}
	if !hasParam(raw, "serverSelectionTimeoutMS") {
		opts.SetServerSelectionTimeout(defaultServerSelection)
	}
	client, err := mongo.Connect(opts) // connects in the background
	if err != nil {
		return nil, bad(errorWithoutSecret(err, raw).Error())
	}
	disconnect := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.Disconnect(ctx)
	}
	store, err := mongostore.New(client, mongostore.Config{Database: database, Collection: o.Table, Lanes: o.Lanes})
	if err != nil {
		_ = disconnect()
		return nil, err
	}
	c := store.Config()
	user := ""
	if opts.Auth != nil {
		user = opts.Auth.Username
	}
	return &Store{
		Outbox:  store,
		Kind:    MongoDB,
		Display: Redact(raw) + " collection " + c.Database + "." + c.Collection,
		Target: Target{System: systemMongoDB, Addr: joinAddrs(urlHosts(raw)), User: user, Database: c.Database,
			Table: c.Collection, TableKind: "collection", URL: Redact(raw)},
		closers: []func() error{disconnect},
	}, nil
}

// mongoDatabase returns the path of a mongodb:// URL: the part between the
// hosts and the query.
func mongoDatabase(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	rest, _, _ = strings.Cut(rest, "?")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return path
}

// hasParam reports whether a URL's query names param (case-insensitive, as
// MongoDB's options are).
func hasParam(raw, param string) bool {
	_, query, ok := strings.Cut(raw, "?")
	if !ok {
		return false
	}
	for kv := range strings.SplitSeq(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, param) {
			return true
		}
	}
	return false
}
