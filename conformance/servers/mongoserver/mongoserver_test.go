package mongoserver

import (
	"context"
	"os"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/txoutbox/conformance/servers"
)

func TestMain(m *testing.M) { os.Exit(servers.Main(m)) }

func TestFromEnvValidates(t *testing.T) {
	t.Parallel()
	if _, err := finder.FromEnv("mongodb://127.0.0.1:27017/?directConnection=true"); err != nil {
		t.Errorf("a valid URL: %v", err)
	}
	if _, err := finder.FromEnv("postgres://nope"); err == nil {
		t.Error("a postgres:// URL was accepted")
	}
}

func databases(t *testing.T, url string) []string {
	t.Helper()
	var names []string
	err := withClient(url, func(ctx context.Context, c *mongo.Client) error {
		var err error
		names, err = c.ListDatabaseNames(ctx, bson.D{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestDatabaseIsDropped(t *testing.T) {
	t.Parallel()
	url := URL(t) // skips here rather than in the subtest
	var name string
	t.Run("use", func(t *testing.T) {
		_, name = Database(t)
		err := withClient(url, func(ctx context.Context, c *mongo.Client) error {
			_, err := c.Database(name).Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
			return err
		})
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		if !slices.Contains(databases(t, url), name) {
			t.Fatalf("database %s does not exist after an insert", name)
		}
	})
	if slices.Contains(databases(t, url), name) {
		t.Errorf("database %s still exists after the test", name)
	}
}
