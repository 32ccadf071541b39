package relay

import (
	"context"

	"github.com/txoutbox/txoutbox/cmd/outbox/internal/app"
	outbox "github.com/txoutbox/txoutbox/core"
)

// stopOnRefusal is the relay's Observer, wrapping the metrics observer: a
// claim that fails in a way no retry can cure (the store refuses the
// credentials or a privilege, the database or the outbox tables do not
// exist, see app.NeedsFix) stops the relay with that error, where the core
// relay would pause and retry forever. A store that does not answer is
// still waited for.
type stopOnRefusal struct {
	outbox.Observer
	stop context.CancelCauseFunc
}

func (o stopOnRefusal) ObserveClaim(e outbox.ClaimEvent) {
	o.Observer.ObserveClaim(e)
	if e.Err != nil && app.NeedsFix(e.Err) {
		o.stop(e.Err)
	}
}
