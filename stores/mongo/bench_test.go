package mongostore_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
	mongostore "github.com/txoutbox/txoutbox/stores/mongo"
)

// BenchmarkEnqueue measures what the outbox adds to a business write: an
// update of one user document alone, then with 1 and 10 messages of the
// user's key enqueued. It runs in a transaction (session.WithTransaction)
// where the server has them, else as plain writes (AllowNonTransactional).
//
//	go test -run '^$' -bench Enqueue -benchtime 2s
func BenchmarkEnqueue(b *testing.B) {
	for _, n := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("messages=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s, client := testStore(b, mongostore.Config{})
			db := client.Database(s.Config().Database)
			if err := db.CreateCollection(ctx, "users"); err != nil {
				b.Fatal(err)
			}
			users := db.Collection("users")
			if _, err := users.InsertOne(ctx, bson.D{{Key: "_id", Value: "user-42"}, {Key: "name", Value: "Ada"}}); err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"user_id":"user-42","name":"Ada Lovelace","email":"ada@example.com"}`)
			msgs := make([]outbox.Message, n)
			write := func(ctx context.Context, i int) error {
				for j := range msgs {
					msgs[j] = outbox.Message{Topic: "user_updated", Key: "user-42", Payload: payload}
				}
				_, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: "user-42"}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprint("Ada ", i)}}}})
				if err != nil || n == 0 {
					return err
				}
				return s.Enqueue(ctx, msgs...)
			}
			transactions := capabilities(b).noTransactions == ""
			var sess *mongo.Session
			if transactions {
				var err error
				if sess, err = client.StartSession(); err != nil {
					b.Fatal(err)
				}
				defer sess.EndSession(ctx)
			}
			b.ResetTimer()
			for i := range b.N {
				var err error
				if transactions {
					_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) { return nil, write(ctx, i) })
				} else {
					err = write(ctx, i)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDrain measures one relay draining a backlog of 2,000 messages
// over 100 keys into the in-memory publisher. The backlog is written before
// the timer starts; msgs/s is the figure to read.
//
//	go test -run '^$' -bench Drain -benchtime 1x
func BenchmarkDrain(b *testing.B) {
	const backlog, keys = 2000, 100
	for _, batch := range []int{25, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				s, _ := testStore(b, mongostore.Config{AllowNonTransactional: true})
				ctx := context.Background()
				for i := 0; i < backlog; i += 100 {
					msgs := make([]outbox.Message, 100)
					for j := range msgs {
						msgs[j] = outbox.Message{Topic: "t", Key: fmt.Sprint("key-", (i+j)%keys), Payload: []byte("payload")}
					}
					if err := s.Enqueue(ctx, msgs...); err != nil {
						b.Fatal(err)
					}
				}
				pub := memory.NewPublisher(memory.PublisherConfig{})
				relay, err := outbox.NewRelay(s, pub, outbox.RelayConfig{
					BatchSize: batch,
					Retention: 0, // the default: Settle deletes what it delivers
					Logger:    slog.New(slog.DiscardHandler),
				})
				if err != nil {
					b.Fatal(err)
				}
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error)
				b.StartTimer()
				start := time.Now()
				go func() { done <- relay.Run(runCtx) }()
				waitCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
				err = pub.WaitFor(waitCtx, backlog)
				total += time.Since(start)
				b.StopTimer()
				cancel()
				stop()
				<-done
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "msgs/s")
		})
	}
}
