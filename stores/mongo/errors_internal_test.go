package mongostore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/txoutbox/conformance/servers/mongoserver"
	outbox "github.com/txoutbox/txoutbox/core"
)

// TestFailTranslatesCodes: refused authentication and missing privileges are
// ErrAccessDenied and nothing else; a primary stepping down stays
// ErrUnavailable; other server errors get no sentinel.
func TestFailTranslatesCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int32
		want error
	}{
		{codeAuthenticationFailed, outbox.ErrAccessDenied},
		{codeUnauthorized, outbox.ErrAccessDenied},
		{codeNotWritablePrimary, outbox.ErrUnavailable},
		{2, nil}, // BadValue
	}
	for _, tt := range tests {
		err := fail("stats", mongo.CommandError{Code: tt.code, Message: "m"})
		for _, s := range []error{outbox.ErrAccessDenied, outbox.ErrUnavailable, outbox.ErrSchemaMissing} {
			if errors.Is(err, s) != (s == tt.want) {
				t.Errorf("code %d: %v; errors.Is(%v) = %v, want only %v", tt.code, err, s, errors.Is(err, s), tt.want)
			}
		}
	}
}

// TestRefusedCredentialsAreAccessDenied: credentials the server refuses
// (it answers AuthenticationFailed in the connection handshake, whether or
// not it enforces authentication) make every operation fail with
// ErrAccessDenied, not with ErrUnavailable, which would be retried.
func TestRefusedCredentialsAreAccessDenied(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url, db := mongoserver.Database(t)
	url = strings.Replace(url, "://", "://nouser:wrong@", 1)
	if strings.Contains(url, "?") {
		url += "&authMechanism=SCRAM-SHA-256"
	} else {
		url += "?authMechanism=SCRAM-SHA-256"
	}
	// A client per operation: after a failed handshake the driver clears
	// the pool, and an operation that was waiting for a connection of it
	// gets a retryable "pool cleared" error (ErrUnavailable) instead of the
	// refusal; the next attempt meets the refusal again.
	store := func() *Store {
		client, err := mongo.Connect(options.Client().ApplyURI(url).SetServerSelectionTimeout(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
		s, err := New(client, Config{Database: db, AllowNonTransactional: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ops := map[string]func(s *Store) error{
		"Ping":  func(s *Store) error { return s.Ping(ctx) },
		"Stats": func(s *Store) error { _, err := s.Stats(ctx); return err },
		"Read": func(s *Store) error {
			_, err := s.Read(ctx, outbox.ReadParams{Lanes: []int{0}, Limit: 1})
			return err
		},
		"Migrate": func(s *Store) error { return s.Migrate(ctx) },
	}
	for op, call := range ops {
		if err := call(store()); !errors.Is(err, outbox.ErrAccessDenied) || errors.Is(err, outbox.ErrUnavailable) {
			t.Errorf("%s with refused credentials = %v; want ErrAccessDenied and not ErrUnavailable", op, err)
		}
	}
}
