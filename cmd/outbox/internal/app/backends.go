package app

import (
	"context"
	"errors"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	outbox "github.com/txoutbox/txoutbox/core"
)

// OpenStore opens the store o describes, for the command named command
// (it names the database connections "outbox <command>"). A bad URL or
// table name is a [UsageError] that names its flag or variable.
//
// The errors of the command are explained ([App.Explain]) in terms of this
// store: its server, database and table, and the flags that name them.
func (a *App) OpenStore(ctx context.Context, o backend.StoreOptions, command string) (*backend.Store, error) {
	o.Source = a.Source("store")
	if o.TailSource == "" {
		o.TailSource = a.Source("tail")
	}
	o.AppName = "outbox " + command
	a.opened.schema, a.opened.table = o.Schema, o.Table
	s, err := backend.OpenStore(ctx, o)
	if err != nil {
		return nil, a.usage(err)
	}
	a.opened.store = &s.Target
	return s, nil
}

// OpenBroker opens the broker o describes. A bad URL is a [UsageError] that
// names its flag or variable.
func (a *App) OpenBroker(ctx context.Context, o backend.BrokerOptions) (*backend.Broker, error) {
	o.Source = a.Source("broker")
	o.TopicMapSource = a.Source("topic-map")
	o.Logger = a.Logger()
	b, err := backend.OpenBroker(ctx, o)
	return b, a.usage(err)
}

func (a *App) usage(err error) error {
	var ue *backend.URLError
	if errors.As(err, &ue) || errors.Is(err, outbox.ErrInvalidConfig) {
		return &UsageError{Err: err}
	}
	return err
}
