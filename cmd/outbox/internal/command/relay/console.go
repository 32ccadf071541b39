package relay

import (
	"context"

	"github.com/txoutbox/txoutbox/cmd/outbox/backend"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	"github.com/txoutbox/txoutbox/cmd/outbox/internal/ui"
	outbox "github.com/txoutbox/txoutbox/core"
)

// checkConsole refuses console flags that cannot work, before anything is
// opened.
func checkConsole(a *app.App, o ui.Options) error {
	if o.Addr == "" {
		return nil
	}
	auth, err := o.Auth()
	if err != nil {
		return app.Usagef("--ui-token/--ui-basic-auth: %s", err)
	}
	if err := ui.CheckAddr(o.Addr, auth, o.Insecure); err != nil {
		return app.Usagef("%s %s", a.Source("ui-addr"), err)
	}
	return nil
}

// startConsole serves the operator's console beside the relay (with
// --ui-addr) and returns the observer the relay reports to: the metrics
// observer and, with a console, the console too, which then knows the
// deliveries per second and per topic and when each lane last delivered.
func startConsole(ctx context.Context, a *app.App, o ui.Options, st *backend.Store, metrics outbox.Observer) (outbox.Observer, func(), error) {
	if o.Addr == "" {
		return metrics, func() {}, nil
	}
	auth, _ := o.Auth() // checked by checkConsole
	s, err := ui.New(ui.Config{Store: st.Outbox, Display: st.Display, Logger: a.Logger(), Auth: auth, ReadOnly: o.ReadOnly})
	if err != nil {
		return nil, nil, err
	}
	reported := observers{metrics, s.Observer()}
	stop, _, err := ui.Serve(ctx, o.Addr, s)
	if err != nil {
		return nil, nil, err
	}
	return reported, stop, nil
}

// observers reports every event to each observer in turn.
type observers []outbox.Observer

func (os observers) ObserveRead(e outbox.ReadEvent) {
	for _, o := range os {
		o.ObserveRead(e)
	}
}

func (os observers) ObserveBatch(e outbox.BatchEvent) {
	for _, o := range os {
		o.ObserveBatch(e)
	}
}

func (os observers) ObserveLanes(e outbox.LaneEvent) {
	for _, o := range os {
		o.ObserveLanes(e)
	}
}
