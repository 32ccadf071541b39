package outbox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	outbox "github.com/txoutbox/txoutbox/core"
	"github.com/txoutbox/txoutbox/core/memory"
)

func TestNewRelayDefaults(t *testing.T) {
	t.Parallel()
	r, err := outbox.NewRelay(memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{}), outbox.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config()
	want := outbox.RelayConfig{
		BatchSize: outbox.DefaultBatchSize, Concurrency: outbox.DefaultConcurrency,
		PollInterval: outbox.DefaultPollInterval, MinPollInterval: outbox.DefaultMinPollInterval,
		Lease: outbox.DefaultLease, PublishTimeout: outbox.DefaultPublishTimeout, ReadTimeout: outbox.DefaultReadTimeout,
		MaxAttempts:   outbox.DefaultMaxAttempts,
		MinRetryDelay: outbox.DefaultMinRetryDelay, MaxRetryDelay: outbox.DefaultMaxRetryDelay,
		CleanupInterval: outbox.DefaultCleanupInterval, CleanupBatch: outbox.DefaultCleanupBatch,
	}
	got := c
	got.Owner, got.Logger = "", nil
	if got != want {
		t.Fatalf("defaults = %+v\nwant       %+v", got, want)
	}
	if c.Owner == "" || c.Logger == nil {
		t.Fatalf("Owner %q and Logger %v must default to something", c.Owner, c.Logger)
	}
}

func TestNewRelayDerivesReadTimeoutFromLease(t *testing.T) {
	t.Parallel()
	r, err := outbox.NewRelay(memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{}), outbox.RelayConfig{Lease: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Config().ReadTimeout; got != 2*time.Second {
		t.Fatalf("ReadTimeout = %v with a 4s lease; want half the lease", got)
	}
}

func TestNewRelayRejectsBadConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cfg  outbox.RelayConfig
		want string // a word the error must contain
	}{
		{outbox.RelayConfig{BatchSize: -1}, "BatchSize"},
		{outbox.RelayConfig{Concurrency: -2}, "Concurrency"},
		{outbox.RelayConfig{MaxAttempts: -1}, "MaxAttempts"},
		{outbox.RelayConfig{PollInterval: -time.Second}, "negative"},
		{outbox.RelayConfig{PollInterval: time.Second, MinPollInterval: 2 * time.Second}, "MinPollInterval"},
		{outbox.RelayConfig{MinRetryDelay: time.Hour, MaxRetryDelay: time.Minute}, "MinRetryDelay"},
		{outbox.RelayConfig{Lease: 4 * time.Second, ReadTimeout: 3 * time.Second}, "ReadTimeout"},
	}
	for _, c := range cases {
		_, err := outbox.NewRelay(memory.NewStore(memory.StoreConfig{}), memory.NewPublisher(memory.PublisherConfig{}), c.cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewRelay(%+v) = %v; want ErrInvalidConfig mentioning %s", c.cfg, err, c.want)
		}
	}
	if _, err := outbox.NewRelay(nil, memory.NewPublisher(memory.PublisherConfig{}), outbox.RelayConfig{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("NewRelay(nil store) = %v; want ErrInvalidConfig", err)
	}
}
